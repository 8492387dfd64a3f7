"""The GPU benchmark's parts that run without a GPU: the targets arithmetic on synthetic result
files, the recipe snapshot the plain-torch image reads, and a ``--device cpu`` smoke run of the
device path (budget, skips, precisions) of ``benchmarks.encoders``."""

from __future__ import annotations

import json

import pytest

from benchmarks import encoders
from benchmarks.cuda_targets import cuda_targets, main


def _rows(ms: dict[str, float], length: int = 10_000, precision: str | None = None):
    extra = {} if precision is None else {"precision": precision}
    return [{"model": m, "length": length, "fwd_bwd_ms": t, **extra} for m, t in ms.items()]


CPU = {
    "results": _rows({"DMGIN": 1000.0, "SIMHard": 800.0, "DIN": 300.0}) + _rows({"DIN": 9.0}, 100)
}


def test_targets_met_and_missed() -> None:
    cuda = {
        "settings": {"precisions": ["fp32", "bf16"]},
        "results": _rows({"DMGIN": 12.0, "SIMHard": 10.0, "DIN": 10.0}, precision="fp32")
        + _rows({"DMGIN": 14.0, "SIMHard": 10.0}, precision="bf16"),
    }
    report = cuda_targets(CPU, cuda)
    fp32 = report["precisions"]["fp32"]
    assert fp32["dmgin_over_simhard"] == 1.2 and fp32["met"]["dmgin_over_simhard"] is True
    assert fp32["speedup_vs_cpu"] == {"DMGIN": 83.3, "SIMHard": 80.0, "DIN": 30.0}
    assert fp32["met"]["every_encoder_20x"] is True
    bf16 = report["precisions"]["bf16"]
    assert bf16["dmgin_over_simhard"] == 1.4 and bf16["met"]["dmgin_over_simhard"] is False
    # DIN was not measured in bf16: no speedup, and "every encoder" cannot be claimed met
    assert bf16["speedup_vs_cpu"]["DIN"] is None and bf16["met"]["every_encoder_20x"] is None


def test_one_slow_encoder_misses_the_speedup_target() -> None:
    cuda = {"results": _rows({"DMGIN": 12.0, "SIMHard": 10.0, "DIN": 16.0}, precision="fp32")}
    part = cuda_targets(CPU, cuda)["precisions"]["fp32"]
    assert part["speedup_vs_cpu"]["DIN"] == 18.8
    assert part["met"]["every_encoder_20x"] is False


def test_missing_models_give_none(tmp_path, capsys) -> None:
    cuda = {"results": _rows({"DIN": 1.0}, precision="fp32")}
    part = cuda_targets(CPU, cuda)["precisions"]["fp32"]
    assert part["dmgin_over_simhard"] is None and part["met"]["dmgin_over_simhard"] is None
    (tmp_path / "cpu.json").write_text(json.dumps(CPU))
    (tmp_path / "cuda.json").write_text(json.dumps(cuda))
    assert main(["--cpu", str(tmp_path / "cpu.json"), "--cuda", str(tmp_path / "cuda.json")]) == 0
    assert "DIN: CPU/GPU = 300.0x" in capsys.readouterr().out


def test_recipe_snapshot_equals_the_recipes() -> None:
    """benchmarks/encoder_recipes.json (read where the recipe loader cannot be imported) is the
    recipes' model sections; rewrite it with ``python -m benchmarks.encoders
    --write-recipe-snapshot`` after changing a recipe."""
    if not encoders._recipe_loader():
        pytest.skip("the recipe loader (torchrec, yaml) is not installed")
    saved = json.loads(encoders.RECIPE_SNAPSHOT.read_text())
    assert saved == json.loads(json.dumps(encoders.recipe_snapshot()))


def test_device_path_smoke(tmp_path) -> None:
    """``--device cpu`` with every precision: rows per precision, targets per precision, a
    budget that skips (and records) what does not fit."""
    out = tmp_path / "enc.json"
    args = ["--smoke", "--device", "cpu", "--models", "DIN,SIMHard,DMGIN", "--output", str(out)]
    assert encoders.main([*args, "--dtype", "fp32,bf16,bf16-module"]) == 0
    results = json.loads(out.read_text())
    assert results["device"]["device"] == "cpu" and results["skipped"] == []
    assert {(r["model"], r["length"], r["precision"]) for r in results["results"]} == {
        (m, n, p)
        for m in ("DIN", "SIMHard", "DMGIN")
        for n in (20, 60)
        for p in ("fp32", "bf16", "bf16-module")
    }
    assert results["targets"]["fp32"]["dmgin_over_simhard"] is not None
    assert encoders.main([*args, "--budget-s", "0"]) == 0
    results = json.loads(out.read_text())
    assert results["results"] == [] and len(results["skipped"]) == 6
    assert results["targets"] == {"fp32": None}
