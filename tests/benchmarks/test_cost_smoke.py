"""Smoke modes of ``benchmarks.encoders`` and ``benchmarks.cost``: the scripts keep working.

No timing thresholds: every (model, L) ran, reported finite positive figures, ratios are
consistent with the figures they come from, and DMGIN's cached-state scores equal its forward.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from benchmarks import cost, encoders


def _positive(row: dict, *keys: str) -> None:
    for key in keys:
        assert isinstance(row[key], int | float) and math.isfinite(row[key]) and row[key] > 0, (
            key,
            row,
        )


def test_encoders_smoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "encoders.json"
    assert encoders.main(["--smoke", "--output", str(output)]) == 0
    result = json.loads(output.read_text())
    assert not list(tmp_path.glob("*.tmp"))
    lengths = result["settings"]["lengths"]
    assert {(r["model"], r["length"]) for r in result["results"]} == {
        (m, n) for m in encoders.MODELS for n in lengths
    }
    for row in result["results"]:
        _positive(row, "fwd_bwd_ms")
        assert row["fwd_bwd_ms"] == sorted(row["runs_ms"])[len(row["runs_ms"]) // 2]
    assert [g["length"] for g in result["grouping"]] == lengths
    dmgin = {r["length"]: r["fwd_bwd_ms"] for r in result["results"] if r["model"] == "DMGIN"}
    for g in result["grouping"]:
        _positive(g, "group_behaviors_ms", "pandas_ms", "speedup_vs_pandas")
        assert g["share_of_dmgin_step"] == pytest.approx(
            g["group_behaviors_ms"] / dmgin[g["length"]], abs=1e-3
        )
    targets = result["targets"]
    assert targets["length"] == max(lengths)
    assert set(targets["met"]) == {
        "dmgin_over_simhard",
        "dinfull_over_dmgin",
        "grouping_speedup_vs_pandas",
        "grouping_share_of_dmgin_step",
    }
    assert "| DMGIN |" in capsys.readouterr().out


def test_encoders_rejects_unknown_model(tmp_path: Path) -> None:
    output = tmp_path / "encoders.json"
    assert encoders.main(["--smoke", "--models", "DIN,Nope", "--output", str(output)]) == 2
    assert not output.exists()


def test_cost_smoke(tmp_path: Path) -> None:
    assert cost.main(["--smoke", "--output-dir", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "cost.json").read_text())
    settings = result["settings"]
    rows = result["results"]
    assert {(r["model"], r["length"]) for r in rows} == {
        (m, n) for m in settings["models"] for n in settings["lengths"]
    }
    for row in rows:
        assert "error" not in row, row
        _positive(row, "train_step_ms", "samples_per_s", "inference_ms_per_user", "peak_rss_mib")
        _positive(row, "encoder_saved_mib", "serving_ms_per_user", "train_step_full_lookup_ms")
        assert 0 <= row["history_rows_looked_up"] <= 1  # SIMHard may find no match at small L
        if row["model"] in ("DINFull", "SIMSoft", "ETA"):  # they read every row
            assert row["history_rows_looked_up"] == 1
        assert math.isfinite(row["loss"])
        assert row["peak_rss_mib"] >= row["train_peak_rss_mib"] >= row["rss_inputs_mib"]
        # samples/s is rounded to 0.1: allow that on top of 1% (slow steps give small values)
        assert row["samples_per_s"] == pytest.approx(
            row["batch"] / row["train_step_ms"] * 1e3, rel=1e-2, abs=0.051
        )
        if row["model"] == "SIMHard":
            assert row["step_over_simhard"] == row["serving_over_simhard"] == 1.0
        if row["model"] == "DMGIN":  # cached user state scores = full forward, per candidate
            assert row["cached_max_abs_difference"] < 1e-4
            _positive(row, "cached_inference_ms_per_user", "cached_over_full_per_candidate")
        else:
            assert "cached_inference_ms_per_user" not in row
    markdown = (tmp_path / "cost.md").read_text()
    assert all(f"| {m} |" in markdown for m in settings["models"])
    assert "Whole-model ranking ms per user" in markdown
    assert "every history row looked up" in markdown
    assert (tmp_path / "cost.png").stat().st_size > 10_000
    assert not list(tmp_path.glob("*.tmp*"))


def test_cost_records_a_failed_worker_and_exits_nonzero(tmp_path: Path) -> None:
    args = ["--smoke", "--output-dir", str(tmp_path), "--timeout", "0.01"]
    assert cost.main(args) == 1
    rows = json.loads((tmp_path / "cost.json").read_text())["results"]
    assert rows and all("timeout" in row["error"] for row in rows)
