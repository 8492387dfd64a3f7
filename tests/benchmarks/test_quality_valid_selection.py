"""The quality benchmark compares models by the valid metrics of the state it scored on test.

With ``train.test_state=best`` the test split is scored with the best valid state, so the
learning rate and the variant must be chosen by that state's valid AUC, not the last
evaluation's. Records stored before this (their ``valid`` was the last evaluation's, no
``valid_last``) are corrected from their run folders when those are still on disk.
"""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.quality.run import refresh_selected_valid, selected_valid

EVALS = [
    {"split": "valid", "epoch": 0, "step": 10, "auc": 0.80, "gauc": 0.61, "logloss": 0.5},
    {"split": "train", "epoch": 1, "step": 15, "loss": 0.4},
    {"split": "valid", "epoch": 1, "step": 20, "auc": 0.75, "gauc": 0.60, "logloss": 0.6},
]


def _run_dir(tmp_path: Path, summary: dict, lines: list[dict] = EVALS) -> Path:
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.json").write_text(json.dumps(summary))
    (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return out


def test_the_best_states_valid_is_selected_when_test_scored_it(tmp_path: Path) -> None:
    summary = {"valid": EVALS[2], "best": {"step": 10}, "test_state": "best (epoch 0, step 10)"}
    out = _run_dir(tmp_path, summary)
    assert selected_valid(summary, out)["auc"] == 0.80  # from metrics.jsonl (older runs)
    assert selected_valid({**summary, "best_valid": {"auc": 0.9}}, out)["auc"] == 0.9
    last = {**summary, "test_state": "last (step 20)"}
    assert selected_valid(last, out)["auc"] == 0.75


def test_old_records_are_refreshed_once_from_their_run_folder(tmp_path: Path) -> None:
    summary = {"valid": EVALS[2], "best": {"step": 10}, "test_state": "best (epoch 0, step 10)"}
    out = _run_dir(tmp_path, summary)
    record = {"status": "ok", "output_dir": str(out), "valid": {"auc": 0.75}}
    assert refresh_selected_valid(record)
    assert record["valid"]["auc"] == 0.80 and record["valid"]["gauc"] == 0.61
    assert record["valid_last"]["auc"] == 0.75
    assert not refresh_selected_valid(record)  # already has valid_last: left alone
    gone = {"status": "ok", "output_dir": str(tmp_path / "missing"), "valid": {"auc": 0.7}}
    assert not refresh_selected_valid(gone) and gone["valid"]["auc"] == 0.7
