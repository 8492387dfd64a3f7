"""The named adapters on the DuckDB engine: ``prepare --engine duckdb --dataset NAME``.

A named adapter (:mod:`pipelines.data.adapters`) applies its dataset's own rules in pandas (the
label protocol, instacart's and taobao's sampled negatives, spotify's (artist, track) items) and
returns a :class:`~pipelines.data.build.RawLog`. Here that log is staged as parquet (events,
catalogue and, where the adapter has them, separate samples) and DuckDB does the rest exactly as
for the generic path (:func:`pipelines.data.outofcore.build_tables`): dense ids, the sort,
cutoffs (for separate samples: the user's events strictly before the sample's ts, a window sum
over events and samples together), splits and the parquet output. The bundled datasets fit in
memory, so the adapter step does too; logs that do not go through ``--events``.
:func:`pipelines.data.build.write_prepared` is the reference twin
(tests/data/test_duckdb_adapters.py: every array of every named dataset equal).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.data.build import RawLog
from pipelines.data.outofcore import (
    BuildMeta,
    DuckConfig,
    build_tables,
    connect,
    make_scratch,
    write_prepared_tables,
)
from pipelines.data.prepared import DataError


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _stage(raw: RawLog, scratch: Path) -> dict[str, Path]:
    """Write the log's frames as parquet with their original order (``ord``, ``iord``,
    ``sord``) and every id and text already in the string form the pandas path writes."""
    events = pd.DataFrame(
        {
            "ord": np.arange(len(raw.events), dtype=np.int64),
            "user_raw": raw.events["user_raw"].astype(str).to_numpy(),
            "item_raw": raw.events["item_raw"].astype(str).to_numpy(),
            "ts": raw.events["ts"].to_numpy(np.int64),
            "behavior": raw.events["behavior"].to_numpy(np.int64),
        }
    )
    if raw.samples is None:
        events["label"] = raw.events["label"].to_numpy(np.float32)
    for name in raw.numeric_fields:
        events["n_" + name] = raw.events[name].to_numpy(np.float32)
    items = raw.items.reset_index(drop=True)
    catalogue = pd.DataFrame(
        {
            "iord": np.arange(len(items), dtype=np.int64),
            "item_raw": items["item_raw"].astype(str).to_numpy(),
            "category_raw": items["category_raw"].astype(str).to_numpy(),
        }
    )
    for name in raw.item_side_fields:
        catalogue["s_" + name] = items[name].astype(str).to_numpy()
    for name in raw.text_fields:
        catalogue["t_" + name] = items[name].fillna("").astype(str).to_numpy()
    paths = {"events": scratch / "events.parquet", "items": scratch / "items.parquet"}
    events.to_parquet(paths["events"], index=False)
    catalogue.to_parquet(paths["items"], index=False)
    if raw.samples is not None:
        samples = pd.DataFrame(
            {
                "sord": np.arange(len(raw.samples), dtype=np.int64),
                "user_raw": raw.samples["user_raw"].astype(str).to_numpy(),
                "item_raw": raw.samples["item_raw"].astype(str).to_numpy(),
                "ts": raw.samples["ts"].to_numpy(np.int64),
                "label": raw.samples["label"].to_numpy(np.float32),
            }
        )
        paths["samples"] = scratch / "samples.parquet"
        samples.to_parquet(paths["samples"], index=False)
    return paths


def _tables(con: Any, raw: RawLog, paths: dict[str, Path]) -> None:
    """``ev``, ``items`` (and ``sraw``) from the staged files, checked as the pandas path does."""
    con.execute(f"CREATE TABLE ev AS SELECT * FROM read_parquet('{paths['events']}') ORDER BY ord")
    con.execute(f"CREATE TABLE iraw AS SELECT * FROM read_parquet('{paths['items']}')")
    item_col = raw.columns.get("item", "item")
    dup = con.execute(
        "SELECT iord, item_raw FROM (SELECT iord, item_raw, row_number() OVER "
        "(PARTITION BY item_raw ORDER BY iord) AS k FROM iraw) WHERE k > 1 ORDER BY iord LIMIT 1"
    ).fetchone()
    if dup is not None:
        raise DataError(raw.items_path, item_col, f"row {dup[0] + 1}: duplicate item id {dup[1]!r}")
    if con.execute("SELECT count(*) FROM ev").fetchone()[0] == 0:
        raise DataError(raw.events_path, None, "no events")
    sides = ""
    for name in raw.item_side_fields:  # dense codes in order of first appearance
        col = _q("s_" + name)
        con.execute(
            f"CREATE TABLE {_q('side_' + name)} AS SELECT {col} AS v, "
            f"row_number() OVER (ORDER BY min(iord)) AS code FROM iraw GROUP BY {col}"
        )
        sides += f", (SELECT code FROM {_q('side_' + name)} WHERE v = iraw.{col}) AS {col}"
    texts = "".join(f", {_q('t_' + c)}" for c in raw.text_fields)
    con.execute(
        "CREATE TABLE cats AS SELECT category_raw, row_number() OVER (ORDER BY min(iord)) AS "
        "category FROM iraw GROUP BY category_raw"
    )
    con.execute(
        f"CREATE TABLE items AS SELECT iord + 1 AS item, item_raw, category, category_raw{sides}"
        f"{texts} FROM iraw JOIN cats USING (category_raw) ORDER BY item"
    )
    missing = con.execute("SELECT min(ord) FROM ev ANTI JOIN items USING (item_raw)").fetchone()[0]
    if missing is not None:
        value = con.execute(f"SELECT item_raw FROM ev WHERE ord = {int(missing)}").fetchone()[0]
        raise DataError(
            raw.events_path, item_col,
            f"row {int(missing) + 1}: item {value!r} is not in the items file {raw.items_path}",
        )  # fmt: skip
    if "samples" in paths:
        con.execute(f"CREATE TABLE sraw AS SELECT * FROM read_parquet('{paths['samples']}')")
        for key, table, what in (
            ("item_raw", "items", "candidate item not in the items file"),
            ("user_raw", "ev", "user has no events"),
        ):
            bad = con.execute(
                f"SELECT min(sord) FROM sraw ANTI JOIN (SELECT DISTINCT {key} FROM {table}) "
                f"USING ({key})"
            ).fetchone()[0]
            if bad is not None:
                raise DataError(raw.events_path, key[:4], f"sample {int(bad) + 1}: {what}")


def prepare_duckdb_raw(
    raw: RawLog, out_dir: Path, config: DuckConfig | None = None, seed: int = 0
) -> dict[str, Any]:
    """Prepare an adapter's ``raw`` log on DuckDB into ``out_dir`` (written atomically)."""
    import duckdb

    config = config or DuckConfig()
    started = time.time()
    scratch = make_scratch(config, out_dir)
    try:
        paths = _stage(raw, scratch)
        con = connect(config, scratch)
        try:
            _tables(con, raw, paths)
            meta = BuildMeta(
                raw.label_rule, list(raw.behaviors), list(raw.numeric_fields),
                list(raw.text_fields), list(raw.item_side_fields), raw.samples is not None,
            )  # fmt: skip
            manifest = build_tables(con, meta, seed)
            manifest.update(dataset=raw.name, source=raw.source)
            return write_prepared_tables(con, out_dir, meta, manifest, started)
        finally:
            con.close()
    except duckdb.Error as err:
        raise DataError(raw.events_path, None, f"duckdb engine failed: {err}") from err
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
