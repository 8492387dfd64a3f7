"""``--engine spark`` (distributed prepare on a local Spark cluster) against the embedded engines.

* ``shard_sql`` (splitmix64 in Spark SQL on wrapping longs) equals ``shard_of`` (numpy uint64);
* a random log split into a directory of CSV files, on ``local[2]`` with 3 user shards: every
  events, items, users and samples array (values and dtypes), every shard's files and the
  manifest's shard counts equal the pandas path with ``--shards 3`` on the concatenation;
* MovieLens-1M (2,999 users): the named adapter's log staged as parquet, prepared by Spark with
  4 shards, equals ``--dataset movielens-1m-u2999 --shards 4`` (the embedded path) file for file;
* bad input: a missing column, a non-number cell and an item missing from the items file fail
  with exit 1 and a message naming the file, the column and the row; nothing is left on disk.

Skipped (with the reason) where pyspark or a Java runtime is missing; CI installs both.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipelines.data.prepare import main
from pipelines.data.prepared import SPLITS, shard_name

from .engines import assert_same_table, synthetic_log

pytest.importorskip("pyspark", reason="pyspark is not installed (pip install -e '.[spark]')")
if shutil.which("java") is None:
    pytest.skip(
        "no Java runtime for Spark (apt-get install default-jre-headless)", allow_module_level=True
    )

# py4j leaves its gateway sockets to the garbage collector (ResourceWarning, not a failure here)
pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]
PER_SHARD = ["events.parquet"] + [f"samples/{s}.parquet" for s in SPLITS]
TOP = PER_SHARD + ["items.parquet", "users.parquet"]


def _assert_same(a: Path, b: Path, shards: int) -> None:
    pairs = [(a / rel, b / rel) for rel in TOP]
    for k in range(shards):
        pairs += [
            (a / "shards" / shard_name(k) / r, b / "shards" / shard_name(k) / r) for r in PER_SHARD
        ]
    for left_path, right_path in pairs:
        assert_same_table(left_path, right_path, str(right_path.relative_to(b)))
    ma, mb = (json.loads((d / "manifest.json").read_text()) for d in (a, b))
    assert mb["engine"] == "spark" and ma["shards"] == mb["shards"]
    for key in ("vocab", "counts", "behaviors", "numeric_fields", "text_fields"):
        assert ma[key] == mb[key], key
    for split in SPLITS:
        assert ma["splits"][split]["rows"] == mb["splits"][split]["rows"]


def test_shard_sql_equals_shard_of() -> None:
    from pyspark.sql import SparkSession

    from pipelines.data.shards import shard_of
    from pipelines.data.spark_prepare import shard_sql

    rng = np.random.default_rng(0)
    users = np.concatenate([np.arange(1, 200), rng.integers(1, 2**62, 300), [2**63 - 1]])
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = SparkSession.builder.master("local[1]").config("spark.ui.enabled", "false")
    spark = builder.getOrCreate()
    try:
        frame = spark.createDataFrame([(int(u),) for u in users], "u BIGINT")
        frame.createOrReplaceTempView("us")
        for shards in (1, 3, 8, 1000):
            got = [r[0] for r in spark.sql(f"SELECT {shard_sql('u', shards)} FROM us").collect()]
            np.testing.assert_array_equal(
                np.array(got), shard_of(users, shards), err_msg=str(shards)
            )
    finally:
        spark.stop()


def test_directory_of_csv_with_shards_equals_pandas(tmp_path: Path) -> None:
    log = synthetic_log(np.random.default_rng(0), 3000)
    log.to_csv(tmp_path / "log.csv", index=False)
    folder = tmp_path / "parts"
    folder.mkdir()
    for k, bounds in enumerate([(0, 700), (700, 1900), (1900, 3000)]):
        log.iloc[slice(*bounds)].to_csv(folder / f"part-{k}.csv", index=False)
    common = [
        "--map", "user=uid,item=iid,ts=t,behavior=act,category=cat",
        "--label", "score>=3", "--numeric", "dwell", "--shards", "3",
    ]  # fmt: skip
    assert (
        main(["--events", str(tmp_path / "log.csv"), "--out", str(tmp_path / "ref"), *common]) == 0
    )
    spark = ["--engine", "spark", "--spark-master", "local[2]"]
    assert main(["--events", str(folder), "--out", str(tmp_path / "spark"), *spark, *common]) == 0
    _assert_same(tmp_path / "ref", tmp_path / "spark", 3)
    assert not list(tmp_path.glob(".spark-prepare-*"))


def test_movielens_1m_shards_equal_the_embedded_path(shared_data: Path, tmp_path: Path) -> None:
    from pipelines.data.adapters import ADAPTERS

    raw = ADAPTERS["movielens-1m-u2999"](shared_data, 0)
    stage = tmp_path / "stage"
    stage.mkdir()
    raw.events.to_parquet(stage / "ratings.parquet", index=False)
    raw.items.to_parquet(stage / "movies.parquet", index=False)
    name = "movielens-1m-u2999"
    ref = ["--dataset", name, "--data-root", str(shared_data), "--shards", "4"]
    assert main([*ref, "--out", str(tmp_path / "ref")]) == 0
    argv = [
        "--engine", "spark", "--events", str(stage / "ratings.parquet"),
        "--items", str(stage / "movies.parquet"),
        "--map", "user=user_raw,item=item_raw,ts=ts,behavior=behavior,category=category_raw",
        "--label", "label", "--numeric", ",".join(raw.numeric_fields),
        "--item-text", ",".join(raw.text_fields), "--shards", "4",
    ]  # fmt: skip
    assert main([*argv, "--out", str(tmp_path / "spark")]) == 0
    _assert_same(tmp_path / "ref", tmp_path / "spark", 4)


def test_bad_input_names_file_column_and_row(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = synthetic_log(np.random.default_rng(3), 20)

    def run(events: Path, *extra: str) -> str:
        out = tmp_path / "out"
        argv = ["--engine", "spark", "--events", str(events), "--map", "user=uid,item=iid,ts=t"]
        assert main([*argv, "--label", "score>=3", *extra, "--out", str(out)]) == 1
        assert not out.exists() and not list(tmp_path.glob(".out*"))
        assert not list(tmp_path.glob(".spark-prepare-*"))
        return capsys.readouterr().err

    log.drop(columns=["uid"]).to_csv(tmp_path / "nouid.csv", index=False)
    err = run(tmp_path / "nouid.csv")
    assert "nouid.csv" in err and "'uid'" in err and "column missing" in err

    folder = tmp_path / "cells"
    folder.mkdir()
    log.iloc[:8].to_csv(folder / "a.csv", index=False)
    text = log.iloc[8:].astype(str).reset_index(drop=True)
    text.loc[2, "score"] = "lots"
    text.to_csv(folder / "b.csv", index=False)
    err = run(folder)
    assert "b.csv" in err and "'score'" in err and "row 3:" in err and "'lots'" in err

    log.to_csv(tmp_path / "ok.csv", index=False)
    items = pd.DataFrame({"iid": [str(i) for i in range(90) if i != int(log["iid"][1])]})
    items.to_csv(tmp_path / "items.csv", index=False)
    err = run(tmp_path / "ok.csv", "--items", str(tmp_path / "items.csv"))
    first_missing = int(np.flatnonzero(log["iid"].to_numpy() == log["iid"][1])[0]) + 1
    assert "ok.csv" in err and "'iid'" in err and f"row {first_missing}:" in err
    assert "not in the items file" in err
