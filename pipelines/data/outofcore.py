"""Out-of-core generic prepare on DuckDB: the same directory as the pandas path, bounded memory.

DuckDB reads the events file (or a directory of CSV / parquet files), types and checks the
columns, maps raw ids to dense indices, sorts events by (user, ts, original order), computes
each sample's cutoff and split with window functions and streams the result to parquet. Its
sorts and joins spill to ``temp_directory`` once ``memory_limit`` is reached, so peak RSS is set
by configuration, not by the size of the log. The pandas path (:mod:`pipelines.data.ingest` +
:func:`pipelines.data.build.write_prepared`) is the reference twin: the arrays written here
equal its arrays (tests/data/test_duckdb_prepare.py).

Example::

    python -m pipelines.prepare --engine duckdb --events logs/ --map user=uid,item=iid,ts=t \
        --label "r>=4" --memory-limit 2GB --threads 2 --temp-dir /scratch --out data/big
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.data.build import SPLIT_RULE
from pipelines.data.ingest import LabelRule
from pipelines.data.outofcore_read import DuckInput, checked_events, checked_items
from pipelines.data.prepared import (
    MANIFEST_VERSION,
    NUMERIC_PREFIX,
    DataError,
    write_atomically,
    write_json,
)


@dataclass
class DuckConfig:
    """Resources of the DuckDB engine.

    Attributes:
        memory_limit: DuckDB ``memory_limit`` (e.g. "2GB"); sorts and joins spill beyond it.
        threads: DuckDB worker threads.
        temp_directory: where spilled data and the work database go (None = beside ``--out``).
    """

    memory_limit: str = "2GB"
    threads: int = 2
    temp_directory: Path | None = None


@dataclass
class GenericSpec:
    """What to read: the same fields as the pandas generic path (see :mod:`ingest`)."""

    events: Path
    mapping: dict[str, str]
    label: str
    items: Path | None = None
    item_text: list[str] = field(default_factory=list)
    numeric: list[str] = field(default_factory=list)
    sep: str = ","


def make_scratch(config: DuckConfig, out_dir: Path) -> Path:
    """A fresh scratch folder for the work database and spills (``temp_directory`` or beside
    ``out_dir``); the caller removes it."""
    root = Path(config.temp_directory or Path(out_dir).absolute().parent)
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=".duckdb-prepare-", dir=root))


def connect(config: DuckConfig, scratch: Path) -> Any:
    """The work database in ``scratch`` with the engine's memory, threads and spill settings."""
    import duckdb

    con = duckdb.connect(str(scratch / "work.duckdb"))
    con.execute(f"SET memory_limit = '{config.memory_limit}'")
    con.execute(f"SET threads = {int(config.threads)}")
    con.execute(f"SET temp_directory = '{scratch / 'spill'}'")
    con.execute("SET preserve_insertion_order = true")
    con.execute("SET TimeZone = 'UTC'")
    return con


def write_prepared_tables(
    con: Any, out_dir: Path, meta: BuildMeta, manifest: dict, started: float
) -> dict:
    """Write the built tables and the manifest into ``out_dir`` atomically; the manifest."""

    def write(tmp: Path) -> None:
        write_tables(con, tmp, meta, manifest)
        manifest["prepare_seconds"] = round(time.time() - started, 3)
        write_json(tmp / "manifest.json", manifest)

    write_atomically(out_dir, write)
    return manifest


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def prepare_duckdb(
    spec: GenericSpec, out_dir: Path, config: DuckConfig | None = None, seed: int = 0
) -> dict[str, Any]:
    """Prepare ``spec`` into ``out_dir`` (written atomically); returns the manifest."""
    import duckdb

    config = config or DuckConfig()
    started = time.time()
    rule = LabelRule.parse(spec.label)
    scratch = make_scratch(config, out_dir)
    con = connect(config, scratch)
    try:
        events_in = DuckInput.open(spec.events, spec.sep)
        items_in = DuckInput.open(spec.items, spec.sep) if spec.items is not None else None
        item_columns = items_in.load(con, "iraw") if items_in is not None else []
        cat_in_items = spec.mapping.get("category") in item_columns
        behaviors = checked_events(con, events_in, spec.mapping, rule, spec.numeric, cat_in_items)
        checked_items(con, items_in, item_columns, spec.mapping, spec.item_text)
        meta = BuildMeta(str(rule), behaviors, list(spec.numeric), list(spec.item_text))
        manifest = build_tables(con, meta, seed)
        manifest["source"] = {
            "files": [str(spec.events)] + ([str(spec.items)] if spec.items else []),
            "map": spec.mapping,
        }
        manifest["dataset"] = Path(spec.events).stem

        return write_prepared_tables(con, out_dir, meta, manifest, started)
    except duckdb.Error as err:  # e.g. a bad --memory-limit, a cast the checks did not foresee
        raise DataError(spec.events, None, f"duckdb engine failed: {err}") from err
    finally:
        con.close()
        shutil.rmtree(scratch, ignore_errors=True)


@dataclass
class BuildMeta:
    """What the tables carry besides the rows (for the manifest and the written columns).

    Attributes:
        label_rule, behaviors: as in the manifest.
        numeric, text, side: numeric event fields, item text fields, item side fields.
        separate_samples: the samples are table ``sraw`` (``sord``, ``user_raw``, ``item_raw``,
            ``ts``, ``label``) instead of every event with its ``label``.
    """

    label_rule: str
    behaviors: list[str]
    numeric: list[str] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    side: list[str] = field(default_factory=list)
    separate_samples: bool = False


def build_tables(con: Any, meta: BuildMeta, seed: int) -> dict:
    """Index users, join items, compute cutoffs and splits as DuckDB tables (from ``ev`` and
    ``items``, plus ``sraw`` with ``separate_samples``); returns the manifest."""
    con.execute(
        "CREATE TABLE users AS SELECT row_number() OVER (ORDER BY first) AS user, user_raw "
        "FROM (SELECT user_raw, min(ord) AS first FROM ev GROUP BY user_raw)"
    )
    nums = "".join(f", e.{_q('n_' + c)} AS {_q(NUMERIC_PREFIX + c)}" for c in meta.numeric)
    label = "NULL::FLOAT" if meta.separate_samples else "e.label"
    con.execute(
        f"CREATE TABLE ev2 AS SELECT u.user, i.item, i.category, e.ts, e.behavior, {label} AS label, "
        f"e.ord{nums} FROM ev e JOIN users u USING (user_raw) JOIN items i USING (item_raw)"
    )
    if meta.separate_samples:
        # cutoff = the user's events strictly before the sample's ts (ts are whole seconds)
        con.execute(
            "CREATE TABLE sbase AS SELECT user, item, category, ts, label, ord, cutoff FROM ("
            "SELECT *, CAST(coalesce(sum(is_ev) OVER (PARTITION BY user ORDER BY ts RANGE "
            "BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS BIGINT) AS cutoff FROM ("
            "SELECT user, NULL::BIGINT AS item, NULL::BIGINT AS category, ts, NULL::FLOAT AS label, "
            "NULL::BIGINT AS ord, 1 AS is_ev FROM ev2 UNION ALL "
            "SELECT u.user, i.item, i.category, s.ts, s.label, s.sord, 0 FROM sraw s "
            "JOIN users u USING (user_raw) JOIN items i USING (item_raw))) WHERE is_ev = 0"
        )
    else:  # every event is a sample: cutoff = rank - 1 among the user's events by ts
        con.execute(
            "CREATE TABLE sbase AS SELECT user, item, category, ts, label, ord, "
            "rank() OVER (PARTITION BY user ORDER BY ts) - 1 AS cutoff FROM ev2"
        )
    # split over the user's distinct sample timestamps
    con.execute(
        "CREATE TABLE samp AS SELECT user, item, category, ts, label, ord, cutoff, "
        "CASE WHEN n >= 3 AND k >= n - nt THEN 'test' "
        "WHEN n >= 3 AND k >= n - nt - nv THEN 'valid' ELSE 'train' END AS split FROM ("
        "SELECT *, greatest(1, round_even(0.1 * n, 0)) AS nt, greatest(1, round_even(0.1 * n, 0)) AS nv "
        "FROM (SELECT *, dense_rank() OVER w - 1 AS k, "
        "count(DISTINCT ts) OVER (PARTITION BY user) AS n "
        "FROM sbase WINDOW w AS (PARTITION BY user ORDER BY ts)))"
    )
    return manifest_from_tables(lambda sql: con.execute(sql).fetchone(), "duckdb", meta, seed)


def manifest_from_tables(
    one: Callable[[str], Any],
    engine: str,
    meta: BuildMeta,
    seed: int,
    median: str = "quantile_cont",
) -> dict:
    """The manifest of the tables ``users``, ``items``, ``ev2`` and ``samp`` (with ``split``),
    read with ``one`` (SQL -> first row) on any engine that names them so (DuckDB, Spark);
    ``median``: the engine's interpolating quantile function."""
    n_events, n_items_used, n_cats_used = one(
        "SELECT count(*), count(DISTINCT item), count(DISTINCT category) FROM ev2"
    )
    mean, middle, longest = one(
        f"SELECT avg(c), {median}(c, 0.5), max(c) FROM "
        "(SELECT count(*) AS c FROM ev2 GROUP BY user)"
    )
    n_users = one("SELECT count(*) FROM users")[0]
    n_samples = one("SELECT count(*) FROM samp")[0]
    n_catalogue, n_categories = one("SELECT count(*), max(category) FROM items")
    splits = {}
    for name in ("train", "valid", "test"):
        rows, pos, lo, hi = one(
            f"SELECT count(*), sum(label), min(ts), max(ts) FROM samp WHERE split = '{name}'"
        )
        splits[name] = {
            "rows": int(rows),
            "positives": int(pos or 0),
            "positive_rate": float(pos) / rows if rows else None,
            "ts_min": int(lo) if rows else None,
            "ts_max": int(hi) if rows else None,
        }
    return {
        "version": MANIFEST_VERSION,
        "engine": engine,
        "label_rule": meta.label_rule,
        "split_rule": SPLIT_RULE,
        "seed": seed,
        "numeric_fields": list(meta.numeric),
        "text_fields": list(meta.text),
        "item_side_fields": list(meta.side),
        "behaviors": list(meta.behaviors),
        "vocab": {
            "users": int(n_users) + 1,
            "items": int(n_catalogue) + 1,
            "categories": int(n_categories) + 1,
            "behaviors": len(meta.behaviors) + 1,
        },
        "counts": {
            "events": int(n_events),
            "users": int(n_users),
            "items": int(n_items_used),
            "catalogue_items": int(n_catalogue),
            "categories": int(n_cats_used),
            "samples": int(n_samples),
            "history_mean": float(mean),
            "history_median": float(middle),
            "history_max": int(longest),
        },
        "splits": splits,
    }


def _copy(con: Any, query: str, path: Path, row_group: int | None = None) -> None:
    extra = f", ROW_GROUP_SIZE {row_group}" if row_group else ""
    con.execute(f"COPY ({query}) TO '{path}' (FORMAT parquet{extra})")


def write_tables(con: Any, tmp: Path, meta: BuildMeta, manifest: dict) -> None:
    """Stream the tables of :func:`build_tables` into the prepared layout under ``tmp``."""
    import pyarrow.parquet as pq

    nums = "".join(f", {_q(NUMERIC_PREFIX + c)}" for c in meta.numeric)
    _copy(
        con,
        f"SELECT user, item, category, ts, behavior{nums} FROM ev2 ORDER BY user, ts, ord",
        tmp / "events.parquet",
    )
    text = "".join(f", {_q('t_' + c)} AS {_q(c)}" for c in meta.text)
    side = "".join(f", {_q('s_' + c)} AS {_q(c)}" for c in meta.side)
    _copy(
        con,
        f"SELECT item, item_raw, category, category_raw{side}{text} FROM items ORDER BY item",
        tmp / "items.parquet",
    )
    _copy(con, "SELECT user, user_raw FROM users ORDER BY user", tmp / "users.parquet")
    (tmp / "samples").mkdir()
    for name in ("train", "valid", "test"):
        _copy(
            con,
            "SELECT user, item, category, ts, label, cutoff FROM samp "
            f"WHERE split = '{name}' ORDER BY user, ts, ord",
            tmp / "samples" / f"{name}.parquet",
            row_group=65536,
        )
    schema = {}
    for rel in ["events.parquet", "items.parquet", "users.parquet"] + [
        f"samples/{n}.parquet" for n in ("train", "valid", "test")
    ]:
        schema[rel] = {f.name: str(f.type) for f in pq.read_schema(tmp / rel)}
    manifest["schema"] = schema
