"""``--engine duckdb`` (out-of-core prepare) against its reference twin, the pandas path.

* a random synthetic log (ties in ts, repeated items, named behaviors, a numeric field, users
  appearing in shuffled order) split into a directory of CSV files: events, items, users and
  every sample array (cutoff and split included) equal the pandas output on the concatenation;
* the real MovieLens-100k files through the generic path: the same arrays as pandas;
* bad input: a missing column, an empty directory, a non-number cell, an unknown item each fail
  with exit 1 and a message naming the file and column (row where there is one).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.data.prepare import main
from pipelines.data.prepared import SPLITS

from .engines import assert_same_table, synthetic_log

TABLES = ["events.parquet", "items.parquet", "users.parquet"] + [
    f"samples/{s}.parquet" for s in SPLITS
]


def _assert_same(a: Path, b: Path) -> None:
    for name in TABLES:
        assert_same_table(a / name, b / name, name)


@pytest.mark.parametrize("seed", [0, 1])
def test_directory_of_csv_equals_pandas_on_the_concatenation(tmp_path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    log = synthetic_log(rng, 3000)
    whole = tmp_path / "log.csv"
    log.to_csv(whole, index=False)
    folder = tmp_path / "parts"
    folder.mkdir()
    for k, bounds in enumerate([(0, 700), (700, 1900), (1900, 3000)]):
        log.iloc[slice(*bounds)].to_csv(folder / f"part-{k}.csv", index=False)
    common = [
        "--map", "user=uid,item=iid,ts=t,behavior=act,category=cat",
        "--label", "score>=3", "--numeric", "dwell", "--seed", "0",
    ]  # fmt: skip
    assert main(["--events", str(whole), "--out", str(tmp_path / "ref"), *common]) == 0
    duck = ["--engine", "duckdb", "--memory-limit", "200MB", "--threads", "2"]
    assert main(["--events", str(folder), "--out", str(tmp_path / "duck"), *duck, *common]) == 0
    _assert_same(tmp_path / "ref", tmp_path / "duck")
    samples = pd.read_parquet(tmp_path / "duck" / "samples" / "train.parquet")
    assert samples["cutoff"].max() > 0 and not list(tmp_path.glob(".duckdb-prepare-*"))


def test_movielens_100k_generic_path_equals_pandas(shared_data: Path, tmp_path: Path) -> None:
    folder = shared_data / "movielens-100k"
    argv = [
        "--events", str(folder / "ml-100k.inter"),
        "--items", str(folder / "ml-100k.item"),
        "--sep", "\t",
        "--map", "user=user_id:token,item=item_id:token,ts=timestamp:float,"
        "behavior=rating:float,category=class:token_seq",
        "--label", "rating:float>=4",
        "--numeric", "rating:float",
        "--item-text", "movie_title:token_seq,class:token_seq,release_year:token",
    ]  # fmt: skip
    assert main([*argv, "--out", str(tmp_path / "ref")]) == 0
    assert main([*argv, "--engine", "duckdb", "--out", str(tmp_path / "duck")]) == 0
    _assert_same(tmp_path / "ref", tmp_path / "duck")


def _run_bad(tmp_path: Path, events: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    out = tmp_path / "out"
    argv = ["--engine", "duckdb", "--events", str(events), "--map", "user=uid,item=iid,ts=t"]
    assert main([*argv, "--label", "score>=3", *extra, "--out", str(out)]) == 1
    assert not out.exists() and not list(tmp_path.glob(".out*"))
    return capsys.readouterr().err


def test_bad_input_names_file_and_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(3)
    log = synthetic_log(rng, 20)
    bad = tmp_path / "nouid.csv"
    log.drop(columns=["uid"]).to_csv(bad, index=False)
    err = _run_bad(tmp_path, bad, capsys)
    assert "nouid.csv" in err and "'uid'" in err and "column missing" in err

    empty = tmp_path / "empty_dir"
    empty.mkdir()
    (empty / "notes.md").write_text("not data")
    err = _run_bad(tmp_path, empty, capsys)
    assert "empty_dir" in err and "no " in err and ".parquet files" in err

    text = log.astype(str)
    text.loc[2, "score"] = "lots"
    text.loc[4, "score"] = "many"
    cell = tmp_path / "cell.csv"
    text.to_csv(cell, index=False)
    err = _run_bad(tmp_path, cell, capsys)
    assert "cell.csv" in err and "'score'" in err and "row 3" in err and "'lots'" in err

    items = pd.DataFrame({"iid": [str(i) for i in range(90) if i != int(log["iid"][1])]})
    items.to_csv(tmp_path / "items.csv", index=False)
    err = _run_bad(tmp_path, tmp_path / "cell.csv", capsys, "--items", str(tmp_path / "items.csv"))
    assert "'score'" in err  # the cell error comes first
    log.to_csv(cell, index=False)
    err = _run_bad(tmp_path, cell, capsys, "--items", str(tmp_path / "items.csv"))
    first_missing = int(np.flatnonzero(log["iid"].to_numpy() == log["iid"][1])[0]) + 1
    assert "'iid'" in err and f"row {first_missing}:" in err and "not in the items file" in err


def test_items_file_without_category_equals_pandas(tmp_path: Path) -> None:
    """Catalogue order from the items file (unused items too), category from the events."""
    rng = np.random.default_rng(5)
    log = synthetic_log(rng, 1500)
    log.to_parquet(tmp_path / "log.parquet")
    catalogue = rng.permutation(120).astype(str)  # 30 items no event uses
    items = pd.DataFrame({"iid": catalogue, "title": [f"t {i}," for i in catalogue]})
    items.loc[3, "title"] = ""
    items.to_csv(tmp_path / "items.csv", index=False)
    argv = [
        "--events", str(tmp_path / "log.parquet"), "--items", str(tmp_path / "items.csv"),
        "--map", "user=uid,item=iid,ts=t,category=cat", "--label", "score>=3",
        "--item-text", "title",
    ]  # fmt: skip
    assert main([*argv, "--out", str(tmp_path / "ref")]) == 0
    assert main([*argv, "--engine", "duckdb", "--out", str(tmp_path / "duck")]) == 0
    _assert_same(tmp_path / "ref", tmp_path / "duck")
