"""`python -m benchmarks.data --smoke`: runs end to end and writes the documented JSON.

No timing thresholds: only that every configuration ran and reported positive numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.data import main
from pipelines.data.prepare import default_data_root

LOADER_KEYS = {
    "history_length", "users", "batch_size", "epochs", "events_load_seconds", "seconds",
    "batches", "samples", "mean_history", "samples_per_s", "history_rows_per_s",
    "rss_after_imports_mib", "peak_rss_mib", "synthetic",
}  # fmt: skip


def _positive(row: dict, *keys: str) -> None:
    for key in keys:
        assert isinstance(row[key], (int, float)) and row[key] > 0, (key, row[key])


def test_smoke_mode_writes_the_expected_json(tmp_path: Path) -> None:
    output = tmp_path / "results" / "data.json"
    returned = main(["--smoke", "--output", str(output)])
    result = json.loads(output.read_text())
    assert result == json.loads(json.dumps(returned))  # what was printed is what was written
    assert not list(output.parent.glob("*.tmp"))  # written via a temp file, then renamed
    assert result["benchmark"] == "data" and result["mode"] == "smoke"

    prepare = result["prepare"]
    assert prepare["dataset"] == "movielens-100k"
    if default_data_root().is_dir():
        _positive(prepare, "seconds", "events", "samples", "peak_rss_mib")
        _positive(prepare, "rss_after_imports_mib")
        assert prepare["events"] == 100_000  # movielens-100k/README.md: 100,000 ratings
        assert prepare["peak_rss_mib"] >= prepare["rss_after_imports_mib"]
    else:
        assert "skipped" in prepare

    lengths = [int(x) for x in result["settings"]["lengths"].split(",")]
    assert [row["history_length"] for row in result["loader"]] == lengths
    for row in result["loader"]:
        assert set(row) == LOADER_KEYS
        _positive(row, "seconds", "batches", "samples", "samples_per_s", "history_rows_per_s")
        _positive(row, "events_load_seconds", "peak_rss_mib", "rss_after_imports_mib")
        assert row["peak_rss_mib"] >= row["rss_after_imports_mib"]
        # every synthetic sample has >= L past events, so the loader keeps exactly max_len = L
        assert row["mean_history"] == row["history_length"]
        _positive(row["synthetic"], "seconds", "events", "peak_rss_mib")
