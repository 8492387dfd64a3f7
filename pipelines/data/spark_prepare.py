"""Generic prepare on Apache Spark: the same directory (and user shards) as the embedded engines.

For logs that outgrow one machine. Spark reads the events (a file or a directory of CSV /
parquet files) and the items, checks and types the columns (:mod:`pipelines.data.spark_read`),
maps raw ids to dense indices (users and items in order of first appearance), computes each
sample's ``cutoff`` (``rank() - 1`` over the user's events by ts) and split (``dense_rank`` over
the user's distinct timestamps, half-to-even rounding) with window functions partitioned by
user, and hashes users into shards (``splitmix64(user) % S`` written as Spark SQL, equal to
:func:`pipelines.data.shards.shard_of`). The executors write every table, sorted, as parquet
part files; the driver then streams each table's parts, in order, into the single files of the
prepared layout (one record batch in memory at a time) and writes the manifest. DuckDB
(:mod:`pipelines.data.outofcore`) and pandas are the reference twins
(tests/data/test_spark_prepare.py: every array equal, shards included).

Example (a local cluster of two worker threads; any ``--spark-master`` URL works)::

    python -m pipelines.prepare --engine spark --spark-master "local[2]" --events logs/ \
        --map user=uid,item=iid,ts=t --label "r>=4" --shards 8 --out data/big
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.data.ingest import LabelRule
from pipelines.data.outofcore import BuildMeta, GenericSpec, manifest_from_tables
from pipelines.data.prepared import (
    NUMERIC_PREFIX,
    SPLITS,
    DataError,
    shard_name,
    write_atomically,
    write_json,
)
from pipelines.data.shards import HASH_NAME
from pipelines.data.spark_read import SparkInput, checked_events, checked_items

_MASK64 = (1 << 64) - 1


@dataclass
class SparkConfig:
    """Where and how Spark runs.

    Attributes:
        master: Spark master URL (``local[2]``: two worker threads on this machine).
        driver_memory: ``spark.driver.memory`` (in local mode the executors live in the driver).
        shuffle_partitions: ``spark.sql.shuffle.partitions`` (parallelism of sorts and joins).
        temp_directory: Spark's staging and ``spark.local.dir`` (None = beside ``--out``).
    """

    master: str = "local[2]"
    driver_memory: str = "2g"
    shuffle_partitions: int = 8
    temp_directory: Path | None = None


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def shard_sql(column: str, num_shards: int) -> str:
    """Spark SQL of ``splitmix64(column) % num_shards`` on 64-bit wrapping longs."""
    z = f"({column} + ({_signed(0x9E3779B97F4A7C15)}L))"
    z = f"(({z} ^ shiftrightunsigned({z}, 30)) * ({_signed(0xBF58476D1CE4E5B9)}L))"
    z = f"(({z} ^ shiftrightunsigned({z}, 27)) * ({_signed(0x94D049BB133111EB)}L))"
    z = f"({z} ^ shiftrightunsigned({z}, 31))"
    s = int(num_shards)  # unsigned z mod s from the signed long: halve, then restore the low bit
    return f"(pmod(pmod(shiftrightunsigned({z}, 1), {s}) * 2 + ({z} & 1), {s}))"


def _session(config: SparkConfig, local_dir: Path) -> Any:
    import os

    from pyspark.sql import SparkSession

    if config.master.startswith("local"):  # a local cluster binds to loopback, not the LAN
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    return (
        SparkSession.builder.master(config.master)
        .appName("lifelongrec-prepare")
        .config("spark.driver.memory", config.driver_memory)
        .config("spark.sql.shuffle.partitions", str(int(config.shuffle_partitions)))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.ansi.enabled", "false")  # casts of bad cells give NULL (then checked)
        .config("spark.sql.files.maxPartitionBytes", str(1 << 40))  # a file is never split
        .config("spark.local.dir", str(local_dir))
        .config("spark.ui.enabled", "false")
        .config("spark.sql.adaptive.enabled", "false")
        .getOrCreate()
    )


def prepare_spark(
    spec: GenericSpec,
    out_dir: Path,
    config: SparkConfig | None = None,
    seed: int = 0,
    num_shards: int = 0,
) -> dict[str, Any]:
    """Prepare ``spec`` into ``out_dir`` (written atomically), with ``num_shards`` user shards
    when > 0; returns the manifest."""
    try:
        import pyspark  # noqa: F401
    except ImportError as err:
        raise ValueError("--engine spark needs pyspark: pip install -e '.[spark]'") from err
    config = config or SparkConfig()
    started = time.time()
    rule = LabelRule.parse(spec.label)
    scratch_root = Path(config.temp_directory or Path(out_dir).absolute().parent)
    scratch_root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".spark-prepare-", dir=scratch_root))
    spark = _session(config, scratch / "local")
    try:
        events_in = SparkInput.open(spec.events, spec.sep)
        items_in = SparkInput.open(spec.items, spec.sep) if spec.items is not None else None
        item_columns = items_in.load(spark, "iraw") if items_in is not None else []
        cat_in_items = spec.mapping.get("category") in item_columns
        behaviors = checked_events(spark, events_in, spec.mapping, rule, spec.numeric, cat_in_items)
        checked_items(spark, events_in, items_in, item_columns, spec.mapping, spec.item_text)
        manifest = _build(spark, spec, rule, behaviors, seed, num_shards)
        manifest["source"] = {
            "files": [str(spec.events)] + ([str(spec.items)] if spec.items else []),
            "map": spec.mapping,
        }
        manifest["dataset"] = Path(spec.events).stem
        manifest["spark"] = {"master": config.master, "version": spark.version}

        def write(tmp: Path) -> None:
            _write(spark, tmp, scratch / "parts", spec, manifest, num_shards)
            manifest["prepare_seconds"] = round(time.time() - started, 3)
            write_json(tmp / "manifest.json", manifest)

        write_atomically(out_dir, write)
        return manifest
    except Exception as err:
        if isinstance(err, (DataError, ValueError)):
            raise
        from py4j.protocol import Py4JError
        from pyspark.errors import PySparkException

        if isinstance(err, (PySparkException, Py4JError)):
            raise DataError(spec.events, None, f"spark engine failed: {err}") from err
        raise
    finally:
        spark.stop()
        shutil.rmtree(scratch, ignore_errors=True)


def _q(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _build(
    spark: Any, spec: GenericSpec, rule: LabelRule, behaviors: list[str], seed: int, shards: int
) -> dict:
    """Index users, join items, compute cutoffs, splits and shards as Spark views."""
    spark.sql(
        "SELECT row_number() OVER (ORDER BY first) AS user, user_raw "
        "FROM (SELECT user_raw, min(ord) AS first FROM ev GROUP BY user_raw)"
    ).cache().createOrReplaceTempView("users")
    nums = "".join(f", e.{_q('n_' + c)} AS {_q(NUMERIC_PREFIX + c)}" for c in spec.numeric)
    shard = f", {shard_sql('u.user', shards)} AS shard" if shards else ""
    spark.sql(
        "SELECT u.user, i.item, i.category, e.ts, e.behavior, e.label, e.ord"
        f"{nums}{shard} FROM ev e JOIN users u USING (user_raw) JOIN items i USING (item_raw)"
    ).cache().createOrReplaceTempView("ev2")
    # cutoff = events of the user strictly before ts = rank - 1; split over distinct (user, ts)
    keep = "user, item, category, ts, label, ord" + (", shard" if shards else "")
    spark.sql(
        f"SELECT {keep}, cutoff, "
        "CASE WHEN n >= 3 AND k >= n - nt THEN 'test' "
        "WHEN n >= 3 AND k >= n - nt - nv THEN 'valid' ELSE 'train' END AS split FROM ("
        "SELECT *, greatest(1, bround(0.1 * n, 0)) AS nt, greatest(1, bround(0.1 * n, 0)) AS nv "
        f"FROM (SELECT *, max(k) OVER (PARTITION BY user) + 1 AS n FROM (SELECT {keep}, "
        "rank() OVER w - 1 AS cutoff, dense_rank() OVER w - 1 AS k "
        "FROM ev2 WINDOW w AS (PARTITION BY user ORDER BY ts))))"
    ).cache().createOrReplaceTempView("samp")
    meta = BuildMeta(str(rule), behaviors, list(spec.numeric), list(spec.item_text))
    return manifest_from_tables(
        lambda sql: spark.sql(sql).collect()[0], "spark", meta, seed, median="percentile"
    )


# the prepared layout's column types (what the pandas and DuckDB engines write)
def _schema(columns: list[str]) -> Any:
    import pyarrow as pa

    types = {"label": pa.float32(), "item_raw": pa.string(), "category_raw": pa.string()}
    types["user_raw"] = pa.string()
    fields = []
    for c in columns:
        if c in types:
            fields.append(pa.field(c, types[c]))
        elif c.startswith(NUMERIC_PREFIX):
            fields.append(pa.field(c, pa.float32()))
        elif c in ("user", "item", "category", "ts", "behavior", "cutoff"):
            fields.append(pa.field(c, pa.int64()))
        else:
            fields.append(pa.field(c, pa.string()))  # item text columns
    return pa.schema(fields)


def _concat(parts: Path, target: Path, columns: list[str], row_group: int | None = None) -> None:
    """Stream the parquet part files under ``parts`` (in name order = Spark partition order)
    into the single file ``target``, one record batch at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _schema(columns)
    files = sorted(parts.glob("part-*.parquet")) if parts.is_dir() else []
    target.parent.mkdir(parents=True, exist_ok=True)
    with pq.ParquetWriter(target, schema) as writer:
        for f in files:
            for batch in pq.ParquetFile(f).iter_batches(batch_size=row_group or 65536):
                table = pa.Table.from_batches([batch]).select(columns).cast(schema)
                writer.write_table(table, row_group_size=row_group)


def _write(
    spark: Any, tmp: Path, parts: Path, spec: GenericSpec, manifest: dict, shards: int
) -> None:
    import pyarrow.parquet as pq

    nums = [NUMERIC_PREFIX + c for c in spec.numeric]
    ev_cols = ["user", "item", "category", "ts", "behavior", *nums]
    samp_cols = ["user", "item", "category", "ts", "label", "cutoff"]
    text = [f"{_q('t_' + c)} AS {_q(c)}" for c in spec.item_text]
    tables = {
        "events.parquet": (
            spark.sql(f"SELECT {', '.join(map(_q, ev_cols))}, ord FROM ev2"),
            ["user", "ts", "ord"], ev_cols, None,
        ),
        "items.parquet": (
            spark.sql(
                "SELECT " + ", ".join(["item", "item_raw", "category", "category_raw", *text])
                + " FROM items"
            ),
            ["item"], ["item", "item_raw", "category", "category_raw", *spec.item_text], None,
        ),
        "users.parquet": (spark.table("users"), ["user"], ["user", "user_raw"], None),
    }  # fmt: skip
    for name in SPLITS:
        tables[f"samples/{name}.parquet"] = (
            spark.sql(f"SELECT {', '.join(samp_cols)}, ord FROM samp WHERE split = '{name}'"),
            ["user", "ts", "ord"], samp_cols, 65536,
        )  # fmt: skip
    for rel, (frame, order, columns, row_group) in tables.items():
        stage = parts / rel.replace("/", "_")
        frame.orderBy(*order).select(*columns).write.parquet(str(stage))
        _concat(stage, tmp / rel, columns, row_group)
    if shards:
        manifest["shards"] = _write_shards(spark, tmp, parts, ev_cols, samp_cols, shards)
    manifest["schema"] = {
        rel: {f.name: str(f.type) for f in pq.read_schema(tmp / rel)} for rel in tables
    }


def _write_shards(
    spark: Any, tmp: Path, parts: Path, ev_cols: list[str], samp_cols: list[str], shards: int
) -> dict[str, Any]:
    """Every shard's events and samples: each shard is one Spark partition, sorted (user, ts,
    original order), written under ``shard=k/`` then streamed to ``shards/NNNN/``."""
    sources = {"events.parquet": (spark.table("ev2"), ev_cols, None)}
    for name in SPLITS:
        sources[f"samples/{name}.parquet"] = (
            spark.table("samp").where(f"split = '{name}'"), samp_cols, 65536
        )  # fmt: skip
    counts: dict[str, list[int]] = {}
    for rel, (frame, columns, row_group) in sources.items():
        stage = parts / ("shard_" + rel.replace("/", "_"))
        (
            frame.select(*columns, "ord", "shard")
            .repartition(shards, "shard")
            .sortWithinPartitions("shard", "user", "ts", "ord")
            .drop("ord")
            .write.partitionBy("shard")
            .parquet(str(stage))
        )
        for k in range(shards):
            _concat(stage / f"shard={k}", tmp / "shards" / shard_name(k) / rel, columns, row_group)
        rows = dict(frame.groupBy("shard").count().collect())
        counts[rel] = [int(rows.get(k, 0)) for k in range(shards)]
    users = dict(spark.sql("SELECT shard, count(DISTINCT user) FROM ev2 GROUP BY shard").collect())
    return {
        "count": shards,
        "hash": HASH_NAME,
        "users": [int(users.get(k, 0)) for k in range(shards)],
        "events": counts["events.parquet"],
        "samples": {name: counts[f"samples/{name}.parquet"] for name in SPLITS},
    }
