"""`python -m benchmarks.quality --smoke`: trains the smoke models, writes JSON + markdown + PNG,
skips recorded runs on a second invocation, records failed runs and rejects unknown models.

No timing thresholds. The smoke run (4 child trainings on tiny synthetic data) happens once per
module; every path (data, runs, results) is under a temporary directory.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.quality.run import SMOKE_MODELS, main, merge_settings
from benchmarks.quality.variants import VARIANTS

REPO_ROOT = Path(__file__).resolve().parents[2]
SMOKE = SMOKE_MODELS.split(",")
RESULTS_NAME = "quality_synthetic-smoke"


def _argv(base: Path, *extra: str) -> list[str]:
    return [
        "--smoke",
        "--data-dir", str(base / "data"),
        "--runs-dir", str(base / "runs"),
        "--results-dir", str(base / "results"),
        *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    base = tmp_path_factory.mktemp("quality")
    return base, main(_argv(base))


def _metrics_files(base: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in sorted((base / "runs").rglob("metrics.json"))}


def test_smoke_trains_every_model_and_writes_the_reports(smoke: tuple[Path, int]) -> None:
    base, code = smoke
    assert code == 0
    results_dir = base / "results"
    result = json.loads((results_dir / f"{RESULTS_NAME}.json").read_text())
    assert result["benchmark"] == "quality" and result["dataset"] == "synthetic-smoke"
    assert result["smoke"] is True and result["settings"]["mode"] == "smoke"
    assert result["last_invocation"] == {**result["last_invocation"], "trained": 4, "failed": 0}
    assert set(result["runs"]) == set(SMOKE)
    for name in SMOKE:
        (record,) = result["runs"][name].values()  # 1 lr x 1 seed
        assert record["status"] == "ok", record.get("log_tail")
        assert record["variant"] == name and record["steps"] > 0
        for split in ("valid", "test"):
            auc = record[split]["auc"]
            assert math.isfinite(auc) and 0.0 <= auc <= 1.0, (name, split, auc)
            assert record[split]["logloss"] > 0
        assert record["peak_rss_mib"] > 0 and record["train_seconds"] > 0
        metrics = base / "runs" / "synthetic-smoke" / name / "lr0.002_s0" / "metrics.json"
        # models are compared by the valid AUC of the state the test split was scored with
        assert record["valid"]["auc"] == json.loads(metrics.read_text())["best_valid"]["auc"]
    # the summary picked the only lr; the floor and the repeat count are there, real AUCs
    assert [row["model"] for row in result["summary"]] == [m for m in VARIANTS if m in SMOKE]
    assert all(
        row["lr"] == 0.002 and row["test_auc"]["mean"] is not None for row in result["summary"]
    )
    assert 0.0 < result["floor"]["test"]["auc"] < 1.0
    assert 0.0 <= result["repeat_count"]["test"]["auc"] <= 1.0
    assert 0.0 <= result["repeat_count"]["test"]["seen_share"] <= 1.0
    assert result["dataset_facts"]["counts"]["users"] == 40
    assert result["environment"]["torch"] and result["environment"]["date"]
    # every model runs the same dims, batch and optimizer: only encoder settings differ
    assert set(result["settings"]["differs"]) <= {"model.encoder_config", "model.group_key"}
    assert result["settings"]["shared"]["model.embedding_dim"] == 16

    markdown = (results_dir / f"{RESULTS_NAME}.md").read_text()
    table_rows = [line for line in markdown.splitlines() if line.startswith("| ")]
    for name in SMOKE:
        assert any(line.startswith(f"| {name} |") for line in table_rows), name
    assert any(line.startswith("| floor (no model) |") for line in table_rows)
    assert any(line.startswith("| repeat count (no model) |") for line in table_rows)
    png = (results_dir / f"{RESULTS_NAME}.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 1000
    assert not list(results_dir.glob("*.tmp"))  # written via temp files, then renamed


def test_second_invocation_skips_every_recorded_run(smoke: tuple[Path, int]) -> None:
    base, _ = smoke
    path = base / "results" / f"{RESULTS_NAME}.json"
    before = json.loads(path.read_text())
    trained = _metrics_files(base)
    assert len(trained) == len(SMOKE)

    assert main(_argv(base)) == 0

    after = json.loads(path.read_text())
    assert after["last_invocation"] == {**after["last_invocation"], "trained": 0, "skipped": 4}
    assert after["runs"] == before["runs"]  # same records, hashes and metrics
    assert _metrics_files(base) == trained  # no run was trained again

    # a later invocation over a subset keeps the file's settings as the union, not the subset
    assert main(_argv(base, "--models", "DIN")) == 0
    subset = json.loads(path.read_text())
    assert subset["last_invocation"] == {**subset["last_invocation"], "planned": 1, "trained": 0}
    assert subset["settings"]["models"] == [m for m in VARIANTS if m in SMOKE]
    assert subset["settings"]["differs"] == before["settings"]["differs"]
    assert len(subset["summary"]) == len(SMOKE)


def test_merged_settings_are_the_union_of_the_invocations() -> None:
    first = {
        "mode": "full", "models": ["DMGIN", "DIN"], "seeds": [0], "lrs": [0.002], "epochs": 2,
        "shared": {"model.embedding_dim": 16, "model.group_key": "cluster"}, "differs": {},
    }  # fmt: skip
    second = {
        "mode": "full", "models": ["SIMSoft"], "seeds": [2, 1], "lrs": [0.001, 0.002],
        "epochs": 2, "shared": {"model.embedding_dim": 16, "model.group_key": None},
        "differs": {"loader.max_len": [1000, 500]},
    }  # fmt: skip
    merged = merge_settings(first, second)
    assert merged["models"] == ["DIN", "SIMSoft", "DMGIN"]  # benchmark order
    assert merged["seeds"] == [0, 1, 2] and merged["lrs"] == [0.001, 0.002]
    assert merged["shared"] == {"model.embedding_dim": 16} and merged["epochs"] == 2
    assert merged["differs"] == {
        "model.group_key": ["cluster", None],
        "loader.max_len": [1000, 500],
    }
    alone = {**second, "seeds": [1, 2]}  # a new file: the invocation's own settings, sorted
    assert merge_settings({}, second) == alone
    assert merge_settings({**first, "mode": "smoke"}, second) == alone  # never mixes modes
    assert merge_settings({}, first)["models"] == ["DIN", "DMGIN"]
    three = merge_settings(merge_settings(first, {**second, "epochs": 3}), first)
    assert three["epochs"] == [2, 3]


def test_a_failed_run_is_recorded_and_the_exit_code_says_so(tmp_path: Path) -> None:
    # a timeout far shorter than any training: the child is killed, the run recorded as failed
    code = main(_argv(tmp_path, "--models", "DIN,SIMHard", "--timeout", "0.01"))
    assert code == 1
    result = json.loads((tmp_path / "results" / f"{RESULTS_NAME}.json").read_text())
    assert result["last_invocation"] == {**result["last_invocation"], "failed": 2, "trained": 0}
    for name in ("DIN", "SIMHard"):  # the benchmark went on after the first failure
        (record,) = result["runs"][name].values()
        assert record["status"] == "failed" and "TimeoutExpired" in record["error"]
        assert "pipelines.train" in record["log_tail"]
    markdown = (tmp_path / "results" / f"{RESULTS_NAME}.md").read_text()
    assert "Failed runs:" in markdown and "| floor (no model) |" in markdown
    assert (tmp_path / "results" / f"{RESULTS_NAME}.png").stat().st_size > 0


def test_unknown_model_exits_nonzero_with_the_known_names(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.quality", *_argv(tmp_path, "--models", "DIN,NoSuch")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "unknown model(s) ['NoSuch']" in done.stderr and "DMGIN" in done.stderr
    assert not (tmp_path / "results").exists()  # nothing measured, nothing written


def test_lr_search_seeds_run_the_grid_and_the_other_seeds_only_the_chosen_rate(
    tmp_path: Path,
) -> None:
    grid = ("--models", "DIN", "--lrs", "0.002,0.004", "--seeds", "0,1")
    assert main(_argv(tmp_path, *grid, "--lr-search-seeds", "0")) == 0
    result = json.loads((tmp_path / "results" / f"{RESULTS_NAME}.json").read_text())
    runs = result["runs"]["DIN"]
    seed0 = {lr: runs[f"lr{lr:g}_s0"]["valid"]["auc"] for lr in (0.002, 0.004)}
    chosen = 0.004 if seed0[0.004] > seed0[0.002] else 0.002  # ties: the smaller rate
    assert set(runs) == {"lr0.002_s0", "lr0.004_s0", f"lr{chosen:g}_s1"}
    assert result["last_invocation"] == {**result["last_invocation"], "planned": 3, "trained": 3}
    assert result["settings"]["lr_search_seeds"] == [0]
    assert "whole grid on seeds [0]" in (tmp_path / "results" / f"{RESULTS_NAME}.md").read_text()
    with pytest.raises(SystemExit, match="must be among"):
        main(_argv(tmp_path, *grid, "--lr-search-seeds", "2"))


def test_train_samples_train_on_the_subsample_and_score_the_whole_splits(tmp_path: Path) -> None:
    assert main(_argv(tmp_path, "--models", "DIN", "--train-samples", "300")) == 0
    result = json.loads((tmp_path / "results" / f"{RESULTS_NAME}-n300.json").read_text())
    assert result["dataset"] == "synthetic-smoke-n300"
    sub = result["train_subsample"]
    assert (sub["train_rows"], sub["source_train_rows"], sub["seed"]) == (300, 640, 0)
    assert result["dataset_facts"]["splits"]["train"] == 300
    assert result["dataset_facts"]["splits"]["valid"] == 80  # whole
    (record,) = result["runs"]["DIN"].values()
    assert record["status"] == "ok", record.get("log_tail")
    assert "data.dataset=" + str(tmp_path / "data" / "synthetic-smoke-train300-s0") in " ".join(
        record["overrides"]
    )
    # the floor fit on the subsample and the one fit on every train sample are both there
    assert result["floor"]["test"] != result["floor_full_train"]["test"]
    markdown = (tmp_path / "results" / f"{RESULTS_NAME}-n300.md").read_text()
    assert "Train subsample: 300 of 640 train samples (seed 0)" in markdown
    assert "| floor (no model, whole train) |" in markdown


def test_the_raw_content_variant_reads_the_raw_embeddings(tmp_path: Path) -> None:
    from benchmarks.quality.variants import config_overrides

    raw, aligned = VARIANTS["CiUBM-raw"], VARIANTS["CiUBM"]
    assert config_overrides(raw, "d", None, "a.npy", "r.npy")[-1] == "data.content=r.npy"
    assert config_overrides(aligned, "d", None, "a.npy", "r.npy")[-1] == "data.content=a.npy"
    with pytest.raises(ValueError, match="CiUBM-raw needs a raw content embedding file"):
        config_overrides(raw, "d", None, "a.npy", None)
    assert raw.recipe == aligned.recipe and raw.overrides == aligned.overrides
