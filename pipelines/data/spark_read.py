"""Checked Spark readers for the distributed prepare (:mod:`pipelines.data.spark_prepare`).

They follow :mod:`pipelines.data.outofcore_read` (the DuckDB engine) column for column: every
problem is a DataError naming the file, the column and the first bad row (1-based data row of
that file, header not counted). The events become the DataFrame ``ev`` (``ord`` = original
order, ``user_raw``, ``item_raw``, ``ts``, ``behavior``, ``label``, ``n_<field>``,
``cat_raw``), the catalogue ``items`` (``item``, ``item_raw``, ``category``, ``category_raw``,
``t_<text>``).

Original order: each input file is read as one unsplit partition (``maxPartitionBytes`` is set
beyond any file), so ``monotonically_increasing_id`` counts a file's rows in file order, and
``ord = file_index * 2**40 + that count`` orders rows by (file name, row) as the other engines
do.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.data.ingest import LabelRule
from pipelines.data.outofcore_read import DuckInput
from pipelines.data.prepared import DataError

_ROW_BITS = 33  # monotonically_increasing_id: partition id << 33 | record number in partition


def _q(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


@dataclass
class SparkInput:
    """One input (a file or a directory of CSV / parquet files), read by Spark."""

    source: DuckInput

    @staticmethod
    def open(path: Path, sep: str) -> SparkInput:
        return SparkInput(DuckInput.open(path, sep))  # the same file discovery and checks

    @property
    def path(self) -> Path:
        return self.source.path

    def load(self, spark: Any, view: str) -> list[str]:
        """Register the input as temp view ``view`` with ``_file`` (index in name order) and
        ``_ord`` (original order); returns the input's own columns."""
        from pyspark.sql import functions as F

        files = [str(f.absolute()) for f in self.source.files]
        if self.source.parquet:
            frame = spark.read.parquet(*files)
        else:
            frame = spark.read.csv(
                files, header=True, sep=self.source.sep, quote='"', escape='"', inferSchema=False
            )
        index = {Path(f).as_uri(): k for k, f in enumerate(files)}
        index.update({f"file:{f}": k for k, f in enumerate(files)})
        mapping = F.create_map(*[x for key, k in index.items() for x in (F.lit(key), F.lit(k))])
        columns = list(frame.columns)
        frame = frame.withColumn("_file", mapping[F.input_file_name()].cast("long"))
        low = F.monotonically_increasing_id().bitwiseAND((1 << _ROW_BITS) - 1)
        frame = frame.withColumn("_ord", F.col("_file") * (1 << 40) + low)
        frame.createOrReplaceTempView(view)
        if frame.filter(F.col("_file").isNull()).limit(1).count():
            raise DataError(self.path, None, "Spark reported a file name outside the inputs")
        if frame.limit(1).count() == 0:
            raise DataError(self.path, None, "has a header but no rows")
        return columns


def _require(path: Path, columns: list[str], needed: list[str]) -> None:
    for column in needed:
        if column not in columns:
            raise DataError(path, column, f"column missing; the file has {columns}")


def _first_bad(
    spark: Any, src: SparkInput, view: str, column: str, condition: str, message: str
) -> None:
    """Raise a DataError for the first row of ``view`` (by original order) where ``condition``
    holds."""
    rows = spark.sql(
        f"SELECT _ord, _file, CAST({_q(column)} AS STRING) AS v FROM {view} "
        f"WHERE {condition} ORDER BY _ord LIMIT 1"
    ).collect()
    if not rows:
        return
    ord_, file_, value = rows[0]
    start = spark.sql(f"SELECT min(_ord) FROM {view} WHERE _file = {int(file_)}").collect()[0][0]
    raise DataError(
        src.source.files[int(file_)], column, f"row {ord_ - start + 1}: " + message.format(v=value)
    )


def _text(column: str) -> str:
    return f"trim(CAST({_q(column)} AS STRING))"


def _check_number(spark: Any, src: SparkInput, view: str, column: str) -> str:
    t = _text(column)
    _first_bad(
        spark, src, view, column,
        f"{t} <> '' AND CAST({t} AS DOUBLE) IS NULL", "{v!r} is not a number",
    )  # fmt: skip
    _first_bad(spark, src, view, column, f"{_q(column)} IS NULL OR {t} = ''", "missing value (NaN)")
    return f"CAST({t} AS DOUBLE)"


def _check_id(spark: Any, src: SparkInput, view: str, column: str) -> str:
    _first_bad(
        spark, src, view, column, f"{_q(column)} IS NULL OR {_text(column)} = ''",
        "missing value (NaN)",
    )  # fmt: skip
    return _text(column)


def _check_ts(spark: Any, src: SparkInput, view: str, column: str) -> str:
    """SQL int64 seconds: numbers (floored) or datetime strings (naive ones as UTC)."""
    t = _text(column)
    total, numbers = spark.sql(
        f"SELECT count(*), count(CAST({t} AS DOUBLE)) FROM {view}"
    ).collect()[0]
    if numbers == total:
        return f"CAST(floor(CAST({t} AS DOUBLE)) AS BIGINT)"
    if 2 * numbers > total:
        cond = f"CAST({t} AS DOUBLE) IS NULL OR {_q(column)} IS NULL"
    else:
        cond = f"CAST({t} AS TIMESTAMP) IS NULL OR {_q(column)} IS NULL"
    _first_bad(spark, src, view, column, cond, "timestamp {v!r} does not parse")
    return f"CAST(floor(unix_micros(CAST({t} AS TIMESTAMP)) / 1000000) AS BIGINT)"


def _label(spark: Any, src: SparkInput, view: str, rule: LabelRule) -> str:
    value = _check_number(spark, src, view, rule.column)
    if rule.op is None:
        _first_bad(
            spark, src, view, rule.column, f"{value} NOT IN (0, 1)", "label {v!r} is not 0 or 1"
        )
        return f"CAST({value} AS FLOAT)"
    op = "=" if rule.op == "==" else rule.op
    return f"CAST(({value} {op} {float(rule.threshold)!r}) AS FLOAT)"


def checked_events(
    spark: Any,
    src: SparkInput,
    mapping: dict[str, str],
    rule: LabelRule,
    numeric: list[str],
    category_in_items: bool = False,
) -> list[str]:
    """Load, check and type the events as temp view ``ev``; returns the behavior names."""
    columns = src.load(spark, "raw")
    needed = [mapping["user"], mapping["item"], mapping["ts"], rule.column, *numeric]
    needed += [mapping["behavior"]] if "behavior" in mapping else []
    cat_in_events = "category" in mapping and not category_in_items
    needed += [mapping["category"]] if cat_in_events else []
    _require(src.path, columns, list(dict.fromkeys(needed)))
    user = _check_id(spark, src, "raw", mapping["user"])
    item = _check_id(spark, src, "raw", mapping["item"])
    ts = _check_ts(spark, src, "raw", mapping["ts"])
    label = _label(spark, src, "raw", rule)
    nums = "".join(
        f", CAST({_check_number(spark, src, 'raw', c)} AS FLOAT) AS {_q('n_' + c)}" for c in numeric
    )
    cat = (
        f", coalesce(CAST({_q(mapping['category'])} AS STRING), '') AS cat_raw"
        if cat_in_events
        else ""
    )
    behaviors = ["event"]
    behavior, join = "CAST(1 AS BIGINT)", ""
    if "behavior" in mapping:
        b = f"coalesce({_text(mapping['behavior'])}, '')"
        bad, low, high = spark.sql(
            f"SELECT count_if(CAST({b} AS DOUBLE) IS NULL "
            f"OR CAST({b} AS DOUBLE) <> round(CAST({b} AS DOUBLE))), "
            f"min(CAST({b} AS DOUBLE)), max(CAST({b} AS DOUBLE)) FROM raw"
        ).collect()[0]
        if bad == 0 and low >= 1:
            behavior = f"CAST(CAST({b} AS DOUBLE) AS BIGINT)"
            behaviors = [str(i) for i in range(1, int(high) + 1)]
        else:
            names = sorted(r[0] for r in spark.sql(f"SELECT DISTINCT {b} AS v FROM raw").collect())
            codes = spark.createDataFrame(
                [(n, k + 1) for k, n in enumerate(names)], "v STRING, code BIGINT"
            )
            codes.createOrReplaceTempView("bnames")
            behavior, join = "bnames.code", f" JOIN bnames ON bnames.v = {b}"
            behaviors = names
    spark.sql(
        f"SELECT raw._ord AS ord, {user} AS user_raw, {item} AS item_raw, {ts} AS ts, "
        f"{behavior} AS behavior, {label} AS label{nums}{cat} FROM raw{join}"
    ).createOrReplaceTempView("ev")
    return behaviors


def checked_items(
    spark: Any,
    events: SparkInput,
    src: SparkInput | None,
    columns: list[str],
    mapping: dict[str, str],
    text: list[str],
) -> None:
    """Build temp view ``items`` (catalogue order = index) and check every event's item is in
    it. ``src`` was loaded as view ``iraw`` (with ``columns``) when given; ``events`` is the
    events input (named in the error about an item missing from the items file)."""
    cat_in_events = "category" in mapping
    if src is None:
        if text:
            raise ValueError("--item-text needs --items")
        cat = "min_by(cat_raw, ord)" if cat_in_events else "'none'"
        spark.sql(
            "SELECT row_number() OVER (ORDER BY first) AS item, item_raw, category_raw FROM "
            f"(SELECT item_raw, min(ord) AS first, {cat} AS category_raw FROM ev GROUP BY item_raw)"
        ).createOrReplaceTempView("items0")
    else:
        item_col = mapping["item"]
        _require(src.path, columns, [item_col, *text])
        item = _check_id(spark, src, "iraw", item_col)
        _first_bad(
            spark, src, "iraw", item_col,
            f"_ord IN (SELECT _ord FROM (SELECT _ord, row_number() OVER (PARTITION BY {item} "
            "ORDER BY _ord) AS k FROM iraw) WHERE k > 1)",
            "duplicate item id {v!r}",
        )  # fmt: skip
        texts = "".join(f", coalesce(CAST({_q(c)} AS STRING), '') AS {_q('t_' + c)}" for c in text)
        join = ""
        if cat_in_events and mapping["category"] in columns:
            cat = f"coalesce(CAST({_q(mapping['category'])} AS STRING), '')"
        elif cat_in_events:
            cat = "coalesce(ec._ec_cat, 'none')"
            join = (
                " LEFT JOIN (SELECT item_raw AS ec_item, min_by(cat_raw, ord) AS _ec_cat FROM ev "
                f"GROUP BY item_raw) ec ON ec.ec_item = {item}"
            )
        else:
            cat = "'none'"
        spark.sql(
            f"SELECT row_number() OVER (ORDER BY iraw._ord) AS item, {item} AS item_raw, "
            f"{cat} AS category_raw{texts} FROM iraw{join}"
        ).createOrReplaceTempView("items0")
        missing = spark.sql(
            "SELECT min(ord) FROM ev LEFT ANTI JOIN items0 USING (item_raw)"
        ).collect()[0][0]
        if missing is not None:
            _first_bad(
                spark,
                events,
                "raw",
                item_col,
                f"_ord = {int(missing)}",
                "item {v!r} is not in the items file " + str(src.path),
            )
    spark.sql(
        "SELECT category_raw, row_number() OVER (ORDER BY min(item)) AS category "
        "FROM items0 GROUP BY category_raw"
    ).createOrReplaceTempView("cats")
    spark.sql("SELECT * FROM items0 JOIN cats USING (category_raw)").createOrReplaceTempView(
        "items"
    )
