"""`python -m benchmarks.scale --smoke`: writes a chunked synthetic log, prepares it out of core,
shards it and reads it with two user-sharded loader ranks (one shard held at a time, and
all of the rank's shards); the JSON and the plot are written."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

from benchmarks.scale import loglog_slope, main, write_log


def test_generated_log_has_the_asked_size_and_per_user_order(tmp_path: Path) -> None:
    facts = write_log(tmp_path / "log", 2_500, per_user=1_000, chunk=700, seed=0)
    table = pq.read_table(tmp_path / "log")
    assert table.num_rows == 2_500 and facts["files"] == 4 and facts["users"] == 3
    frame = table.to_pandas()
    assert frame.groupby("uid")["t"].apply(lambda t: t.is_monotonic_increasing).all()


def test_loglog_slope_of_a_power_law() -> None:
    assert abs(loglog_slope([1e6, 1e7, 1e8], [2.0, 20.0, 200.0]) - 1.0) < 1e-9
    assert loglog_slope([1e6], [1.0]) is None


def test_smoke_run_writes_results(tmp_path: Path) -> None:
    assert main(["--smoke", "--output-dir", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "scale-smoke.json").read_text())
    assert (tmp_path / "scale-smoke.png").stat().st_size > 0
    for row in results["results"]:
        assert row["prepare"]["code"] == 0
        held = [rank["events_held"] for rank in row["loader_rank"]]  # all of a rank's shards
        assert sum(held) == row["events"] and all(0 < h < row["events"] for h in held)
        one = [rank["events_held"] for rank in row["loader"]]  # shard_at_a_time: one shard
        assert all(0 < h < full for h, full in zip(one, held, strict=True)), (one, held)
        assert row["shards"] == 4 and all(r["mode"] == "shard" for r in row["loader"])
        assert all(rank["samples_per_s"] > 0 for rank in row["loader"] + row["loader_rank"])
    assert "not_run" in results["targets"]  # no 100M size in the smoke run
