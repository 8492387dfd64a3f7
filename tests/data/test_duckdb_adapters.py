"""``prepare --engine duckdb --dataset NAME``: every named dataset on DuckDB equals pandas.

* every named adapter on the real data (skipped without ``../shared/data``): events, items (side
  and text fields included), users and every sample array (cutoff and split included) equal the
  pandas path's, values and dtypes, and so do the manifest's counts, vocabularies and splits;
  instacart and taobao have samples separate from their events (sampled negatives), so their
  cutoffs come from the window sum over events and samples together;
* a random log with separate samples (sample timestamps equal to event timestamps, before a
  user's first event, after the last): the same arrays as pandas, and each cutoff equals a
  brute-force count of the user's events strictly before the sample;
* a sample whose user has no events fails in both engines (never user 0).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.data.adapters import ADAPTERS
from pipelines.data.build import RawLog, write_prepared
from pipelines.data.outofcore import DuckConfig
from pipelines.data.outofcore_staged import prepare_duckdb_raw
from pipelines.data.prepare import main
from pipelines.data.prepared import SPLITS, DataError

from .engines import assert_same_table

TABLES = ["events.parquet", "items.parquet", "users.parquet"] + [
    f"samples/{s}.parquet" for s in SPLITS
]


def _assert_same(a: Path, b: Path) -> None:
    for name in TABLES:
        assert_same_table(a / name, b / name, name)
    ma, mb = (json.loads((d / "manifest.json").read_text()) for d in (a, b))
    for key in ("vocab", "behaviors", "item_side_fields", "text_fields", "dataset", "label_rule"):
        assert ma[key] == mb[key], key
    for key, value in ma["counts"].items():
        assert mb["counts"][key] == pytest.approx(value), key
    for split in SPLITS:
        assert ma["splits"][split]["rows"] == mb["splits"][split]["rows"]
        assert ma["splits"][split]["positives"] == mb["splits"][split]["positives"]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_named_dataset_on_duckdb_equals_pandas(
    shared_data: Path, tmp_path: Path, name: str
) -> None:
    argv = ["--dataset", name, "--data-root", str(shared_data)]
    assert main([*argv, "--out", str(tmp_path / "ref")]) == 0
    duck = ["--engine", "duckdb", "--memory-limit", "500MB", "--temp-dir", str(tmp_path / "s")]
    assert main([*argv, *duck, "--out", str(tmp_path / "duck")]) == 0
    _assert_same(tmp_path / "ref", tmp_path / "duck")
    assert json.loads((tmp_path / "duck" / "manifest.json").read_text())["engine"] == "duckdb"


def _separate_samples(rng: np.random.Generator) -> RawLog:
    n, m = 800, 300
    users = rng.permutation(25)[rng.integers(0, 25, n)]
    events = pd.DataFrame(
        {
            "user_raw": [f"u{u}" for u in users],
            "item_raw": rng.integers(0, 50, n).astype(str),
            "ts": rng.integers(5, 40, n) * 10,
            "behavior": rng.integers(1, 4, n),
            "dwell": rng.gamma(2.0, 1.0, n).astype(np.float32),
        }
    )
    s_users = rng.choice(np.unique(users), m)
    samples = pd.DataFrame(
        {
            "user_raw": [f"u{u}" for u in s_users],
            "item_raw": rng.integers(0, 60, m).astype(str),
            "ts": rng.integers(0, 46, m) * 10,  # ties with events, before the first, after the last
            "label": rng.integers(0, 2, m).astype(np.float32),
        }
    )
    items = pd.DataFrame(
        {
            "item_raw": rng.permutation(60).astype(str),
            "category_raw": rng.choice(["a", "b", "c"], 60),
            "shelf": rng.choice(["x", "y", "z", "w"], 60),
            "title": [f"t{i}" for i in range(60)],
        }
    )
    return RawLog(
        name="separate", events=events, items=items, samples=samples, behaviors=["v", "c", "b"],
        numeric_fields=["dwell"], text_fields=["title"], item_side_fields=["shelf"],
        label_rule="given",
    )  # fmt: skip


@pytest.mark.parametrize("seed", [0, 1])
def test_separate_samples_equal_pandas_and_brute_force_cutoffs(tmp_path: Path, seed: int) -> None:
    raw = _separate_samples(np.random.default_rng(seed))
    write_prepared(raw, tmp_path / "ref")
    prepare_duckdb_raw(raw, tmp_path / "duck", DuckConfig("300MB", 2, tmp_path / "s"))
    _assert_same(tmp_path / "ref", tmp_path / "duck")
    events = pd.read_parquet(tmp_path / "duck" / "events.parquet")
    checked = 0
    for split in SPLITS:
        for row in pd.read_parquet(tmp_path / "duck" / "samples" / f"{split}.parquet").itertuples():
            mine = events[events["user"] == row.user]
            assert row.cutoff == int((mine["ts"] < row.ts).sum())
            checked += row.cutoff == 0 or row.cutoff == len(mine)
    assert checked > 0  # the edges (before the first event, after the last) occur


def test_a_sample_whose_user_has_no_events_fails_in_both_engines(tmp_path: Path) -> None:
    raw = _separate_samples(np.random.default_rng(2))
    raw.samples.loc[7, "user_raw"] = "nobody"
    with pytest.raises(DataError, match="sample 8: user has no events"):
        write_prepared(raw, tmp_path / "ref")
    with pytest.raises(DataError, match="sample 8: user has no events"):
        prepare_duckdb_raw(raw, tmp_path / "duck", DuckConfig(temp_directory=tmp_path / "s"))
    assert not (tmp_path / "ref").exists() and not (tmp_path / "duck").exists()
    assert not list((tmp_path / "s").glob(".duckdb-prepare-*"))
