"""Checked DuckDB readers for the out-of-core prepare (:mod:`pipelines.data.outofcore`).

They follow :mod:`pipelines.data.readers`: every problem is a DataError naming the file, the
column and the first bad row (1-based data row of that file, header not counted). The events
end up in the DuckDB table ``ev`` (``ord`` = original order, ``user_raw``, ``item_raw``, ``ts``,
``behavior``, ``label``, ``n_<field>``), the catalogue in ``items`` (``item``, ``item_raw``,
``category``, ``category_raw``, ``t_<text>``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.data.ingest import LabelRule
from pipelines.data.prepared import DataError

CSV_SUFFIXES = (".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz")


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@dataclass
class DuckInput:
    """One input: a file or a directory of CSV / parquet files (read in name order)."""

    path: Path
    files: list[Path]
    parquet: bool
    sep: str

    @staticmethod
    def open(path: Path, sep: str) -> DuckInput:
        path = Path(path)
        if path.is_dir():
            files = sorted(
                p
                for p in path.iterdir()
                if p.is_file() and (p.name.endswith(CSV_SUFFIXES) or p.suffix == ".parquet")
            )
            if not files:
                raise DataError(
                    path, None, f"directory holds no {'/'.join(CSV_SUFFIXES)} or .parquet files"
                )
            kinds = {f.suffix == ".parquet" for f in files}
            if len(kinds) > 1:
                raise DataError(path, None, "directory mixes CSV and parquet files; use one kind")
        elif path.is_file():
            files = [path]
        else:
            raise DataError(path, None, "file not found")
        for f in files:
            if f.stat().st_size == 0:
                raise DataError(f, None, "file is empty")
        return DuckInput(path, files, files[0].suffix == ".parquet", sep)

    def relation(self) -> str:
        names = "[" + ", ".join(_lit(str(f)) for f in self.files) + "]"
        if self.parquet:
            return f"read_parquet({names}, filename = true)"
        return (
            f"read_csv({names}, delim = {_lit(self.sep)}, header = true, all_varchar = true, "
            "quote = '\"', escape = '\"', filename = true)"
        )

    def load(self, con: Any, table: str) -> list[str]:
        """Materialize the input as ``table`` (rowid = original order); returns its columns."""
        import duckdb

        try:
            con.execute(f"CREATE TABLE {table} AS SELECT * FROM {self.relation()}")
        except duckdb.Error as err:
            raise DataError(self.path, None, f"cannot be parsed: {err}") from err
        if con.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0:
            raise DataError(self.path, None, "has a header but no rows")
        return [c[0] for c in con.execute(f"SELECT * FROM {table} LIMIT 0").description]


def _require(path: Path, columns: list[str], needed: list[str]) -> None:
    shown = [c for c in columns if c != "filename"]
    for column in needed:
        if column not in shown:
            raise DataError(path, column, f"column missing; the file has {shown}")


def _first_bad(con: Any, table: str, column: str, condition: str, message: str) -> None:
    """Raise a DataError for the first row of ``table`` (by rowid) where ``condition`` holds."""
    row = con.execute(
        f"SELECT rowid, filename, CAST({_q(column)} AS VARCHAR) FROM {table} "
        f"WHERE {condition} ORDER BY rowid LIMIT 1"
    ).fetchone()
    if row is None:
        return
    rowid, filename, value = row
    start = con.execute(f"SELECT min(rowid) FROM {table} WHERE filename = ?", [filename]).fetchone()
    raise DataError(filename, column, f"row {rowid - start[0] + 1}: " + message.format(v=value))


def _text(column: str) -> str:
    return f"trim(CAST({_q(column)} AS VARCHAR))"


def _check_number(con: Any, table: str, column: str) -> str:
    """SQL double of ``column`` after checking every cell is a number."""
    t = _text(column)
    _first_bad(
        con,
        table,
        column,
        f"{t} <> '' AND try_cast({t} AS DOUBLE) IS NULL",
        "{v!r} is not a number",
    )
    _first_bad(con, table, column, f"{_q(column)} IS NULL OR {t} = ''", "missing value (NaN)")
    return f"CAST({t} AS DOUBLE)"


def _check_id(con: Any, table: str, column: str) -> str:
    _first_bad(
        con, table, column, f"{_q(column)} IS NULL OR {_text(column)} = ''", "missing value (NaN)"
    )
    return _text(column)


def _check_ts(con: Any, table: str, column: str) -> str:
    """SQL int64 seconds: numbers (floored) or datetime strings (naive ones as UTC)."""
    t = _text(column)
    total, numbers = con.execute(
        f"SELECT count(*), count(try_cast({t} AS DOUBLE)) FROM {table}"
    ).fetchone()
    if numbers == total:
        return f"CAST(floor(CAST({t} AS DOUBLE)) AS BIGINT)"
    if 2 * numbers > total:
        cond = f"try_cast({t} AS DOUBLE) IS NULL OR {_q(column)} IS NULL"
    else:
        cond = f"try_cast({t} AS TIMESTAMPTZ) IS NULL OR {_q(column)} IS NULL"
    _first_bad(con, table, column, cond, "timestamp {v!r} does not parse")
    return f"CAST(floor(epoch(CAST({t} AS TIMESTAMPTZ))) AS BIGINT)"


def _label(con: Any, table: str, rule: LabelRule) -> str:
    value = _check_number(con, table, rule.column)
    if rule.op is None:
        _first_bad(con, table, rule.column, f"{value} NOT IN (0, 1)", "label {v!r} is not 0 or 1")
        return f"CAST({value} AS FLOAT)"
    op = "=" if rule.op == "==" else rule.op
    return f"CAST(({value} {op} {float(rule.threshold)!r}) AS FLOAT)"


def checked_events(
    con: Any,
    src: DuckInput,
    mapping: dict[str, str],
    rule: LabelRule,
    numeric: list[str],
    category_in_items: bool = False,
) -> list[str]:
    """Load, check and type the events into table ``ev``; returns the behavior names."""
    columns = src.load(con, "raw")
    needed = [mapping["user"], mapping["item"], mapping["ts"], rule.column, *numeric]
    needed += [mapping["behavior"]] if "behavior" in mapping else []
    cat_in_events = "category" in mapping and not category_in_items
    needed += [mapping["category"]] if cat_in_events else []
    _require(src.path, columns, list(dict.fromkeys(needed)))
    user = _check_id(con, "raw", mapping["user"])
    item = _check_id(con, "raw", mapping["item"])
    ts = _check_ts(con, "raw", mapping["ts"])
    label = _label(con, "raw", rule)
    nums = "".join(
        f", CAST({_check_number(con, 'raw', c)} AS FLOAT) AS {_q('n_' + c)}" for c in numeric
    )
    cat = (
        f", coalesce(CAST({_q(mapping['category'])} AS VARCHAR), '') AS cat_raw"
        if cat_in_events
        else ""
    )
    behaviors = ["event"]
    behavior, join = "CAST(1 AS BIGINT)", ""
    if "behavior" in mapping:
        b = f"coalesce({_text(mapping['behavior'])}, '')"
        bad, low, high = con.execute(
            f"SELECT count(*) FILTER (WHERE try_cast({b} AS DOUBLE) IS NULL "
            f"OR try_cast({b} AS DOUBLE) <> round(try_cast({b} AS DOUBLE))), "
            f"min(try_cast({b} AS DOUBLE)), max(try_cast({b} AS DOUBLE)) FROM raw"
        ).fetchone()
        if bad == 0 and low >= 1:
            behavior = f"CAST(CAST({b} AS DOUBLE) AS BIGINT)"
            behaviors = [str(i) for i in range(1, int(high) + 1)]
        else:
            names = [
                r[0]
                for r in con.execute(f"SELECT DISTINCT {b} AS v FROM raw ORDER BY v").fetchall()
            ]
            con.execute(
                f"CREATE TABLE bnames AS SELECT v, row_number() OVER (ORDER BY v) AS code FROM (SELECT DISTINCT {b} AS v FROM raw)"
            )
            behavior, join = "bnames.code", f" JOIN bnames ON bnames.v = {b}"
            behaviors = names
    con.execute(
        f"CREATE TABLE ev AS SELECT raw.rowid AS ord, {user} AS user_raw, {item} AS item_raw, "
        f"{ts} AS ts, {behavior} AS behavior, {label} AS label{nums}{cat} FROM raw{join} ORDER BY raw.rowid"
    )
    return behaviors


def checked_items(
    con: Any, src: DuckInput | None, columns: list[str], mapping: dict[str, str], text: list[str]
) -> None:
    """Build table ``items`` (catalogue order = index) and check every event's item is in it.

    ``src`` was loaded as table ``iraw`` (with ``columns``) when given.
    """
    cat_in_events = "category" in mapping
    if src is None:
        if text:
            raise ValueError("--item-text needs --items")
        cat = "arg_min(cat_raw, ord)" if cat_in_events else "'none'"
        con.execute(
            f"CREATE TABLE items0 AS SELECT row_number() OVER (ORDER BY first) AS item, item_raw, "
            f"category_raw FROM (SELECT item_raw, min(ord) AS first, {cat} AS category_raw "
            "FROM ev GROUP BY item_raw)"
        )
    else:
        item_col = mapping["item"]
        if item_col not in columns:
            _require(src.path, columns, [item_col])
        _require(src.path, columns, text)
        item = _check_id(con, "iraw", item_col)
        _first_bad(
            con,
            "iraw",
            item_col,
            f"rowid IN (SELECT rowid FROM (SELECT rowid, row_number() OVER (PARTITION BY {item} "
            "ORDER BY rowid) AS k FROM iraw) WHERE k > 1)",
            "duplicate item id {v!r}",
        )
        texts = "".join(f", coalesce(CAST({_q(c)} AS VARCHAR), '') AS {_q('t_' + c)}" for c in text)
        join = ""
        if cat_in_events and mapping["category"] in columns:
            cat = f"coalesce(CAST({_q(mapping['category'])} AS VARCHAR), '')"
        elif cat_in_events:
            cat = "coalesce(ec._ec_cat, 'none')"
            join = (
                " LEFT JOIN (SELECT item_raw AS ec_item, arg_min(cat_raw, ord) AS _ec_cat FROM ev "
                f"GROUP BY item_raw) ec ON ec.ec_item = {item}"
            )
        else:
            cat = "'none'"
        con.execute(
            f"CREATE TABLE items0 AS SELECT iraw.rowid + 1 AS item, {item} AS item_raw, "
            f"{cat} AS category_raw{texts} FROM iraw{join} ORDER BY iraw.rowid"
        )
        missing = con.execute(
            "SELECT min(ord) FROM ev ANTI JOIN items0 USING (item_raw)"
        ).fetchone()[0]
        if missing is not None:
            _first_bad(
                con,
                "raw",
                item_col,
                f"rowid = {int(missing)}",
                "item {v!r} is not in the items file " + str(src.path),
            )
    con.execute(
        "CREATE TABLE cats AS SELECT category_raw, row_number() OVER (ORDER BY min(item)) AS category "
        "FROM items0 GROUP BY category_raw"
    )
    con.execute(
        "CREATE TABLE items AS SELECT * FROM items0 JOIN cats USING (category_raw) ORDER BY item"
    )
