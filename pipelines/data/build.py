"""Turn a raw log (raw ids, any order) into a prepared-dataset directory.

Every adapter (and the generic column-mapping ingestion) produces a :class:`RawLog`;
:func:`write_prepared` indexes ids, sorts events by (user, ts, original order), computes each
sample's ``cutoff`` (events strictly before its ts), splits per user by time and writes the
directory atomically (see :mod:`pipelines.data.prepared`).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.data.prepared import (
    MANIFEST_VERSION,
    NUMERIC_PREFIX,
    DataError,
    write_atomically,
    write_json,
)


@dataclass
class RawLog:
    """A log before indexing.

    Attributes:
        name: dataset name for the manifest.
        events: ``user_raw, item_raw, ts`` (int64 s), ``behavior`` (int64 >= 1) and one float
            column per numeric field; the row order is the original order (tie-breaker).
        items: ``item_raw`` (unique), ``category_raw``, text columns, side columns.
        samples: ``user_raw, item_raw, ts, label``; None = every event is a sample whose label
            is the events' ``label`` column.
        behaviors: behavior names, index i+1.
        numeric_fields, text_fields, item_side_fields: column names as described.
        source, label_rule: for the manifest.
        events_path: file named in errors about events.
        items_path: file named in errors about items.
        columns: name in the input file of the ``user`` / ``item`` columns, for error messages
            (defaults to those internal names).
    """

    name: str
    events: pd.DataFrame
    items: pd.DataFrame
    samples: pd.DataFrame | None
    behaviors: list[str]
    numeric_fields: list[str] = field(default_factory=list)
    text_fields: list[str] = field(default_factory=list)
    item_side_fields: list[str] = field(default_factory=list)
    source: dict[str, Any] = field(default_factory=dict)
    label_rule: str = ""
    events_path: str = "<events>"
    items_path: str = "<items>"
    columns: dict[str, str] = field(default_factory=dict)


SPLIT_RULE = (
    "per user, over the user's distinct sample timestamps in time order (n of them): samples at "
    "the last max(1, round(0.1 n)) timestamps are test, at the max(1, round(0.1 n)) before them "
    "valid, the rest train; users with n < 3 timestamps: all train. Samples sharing a (user, ts) "
    "always land in the same split"
)


def split_per_user(
    users: np.ndarray, ts: np.ndarray, valid: float = 0.1, test: float = 0.1
) -> np.ndarray:
    """Split labels for samples sorted by (user, ts); see SPLIT_RULE."""
    if users.size == 0:
        return np.zeros(0, dtype=object)
    new_key = np.ones(users.shape[0], dtype=bool)
    new_key[1:] = (users[1:] != users[:-1]) | (ts[1:] != ts[:-1])
    key_rank_global = np.cumsum(new_key) - 1  # index of the distinct (user, ts) key
    key_user = users[new_key]
    _, first, counts = np.unique(key_user, return_index=True, return_counts=True)
    n_keys = np.repeat(counts, counts)
    key_rank = np.arange(key_user.shape[0]) - np.repeat(first, counts)
    n_test = np.where(n_keys >= 3, np.maximum(1, np.round(test * n_keys)), 0)
    n_valid = np.where(n_keys >= 3, np.maximum(1, np.round(valid * n_keys)), 0)
    key_split = np.full(key_user.shape[0], "train", dtype=object)
    key_split[key_rank >= n_keys - n_test - n_valid] = "valid"
    key_split[key_rank >= n_keys - n_test] = "test"
    return key_split[key_rank_global]


def compute_cutoffs(
    event_user: np.ndarray, event_ts: np.ndarray, sample_user: np.ndarray, sample_ts: np.ndarray
) -> np.ndarray:
    """Number of the user's events with ts strictly before each sample's ts.

    ``event_user``/``event_ts`` must be sorted by (user, ts). Vectorized with one searchsorted
    over a combined (user, ts) key.
    """
    base = min(
        int(event_ts.min()) if event_ts.size else 0, int(sample_ts.min()) if sample_ts.size else 0
    )
    span = (
        max(
            int(event_ts.max()) if event_ts.size else 0,
            int(sample_ts.max()) if sample_ts.size else 0,
        )
        - base
        + 2
    )
    event_key = event_user.astype(np.int64) * span + (event_ts - base)
    sample_key = sample_user.astype(np.int64) * span + (sample_ts - base)
    user_start = np.searchsorted(event_key, sample_user.astype(np.int64) * span, side="left")
    return np.searchsorted(event_key, sample_key, side="left") - user_start


def _index(values: pd.Series) -> tuple[pd.Index, np.ndarray]:
    """Dense 1-based codes in order of first appearance."""
    codes, uniques = pd.factorize(values, sort=False)
    return pd.Index(uniques), codes.astype(np.int64) + 1


def write_prepared(raw: RawLog, out_dir: str | os.PathLike[str], seed: int = 0) -> dict[str, Any]:
    """Validate, index, sort, split and write ``raw`` atomically; returns the manifest."""
    started = time.time()
    items = raw.items.reset_index(drop=True)
    duplicated = items["item_raw"].duplicated()
    if duplicated.any():
        row = int(np.flatnonzero(duplicated.to_numpy())[0])
        raise DataError(
            raw.items_path,
            raw.columns.get("item", "item"),
            f"row {row + 1}: duplicate item id {items['item_raw'][row]!r}",
        )
    if len(raw.events) == 0:
        raise DataError(raw.events_path, None, "no events")
    item_index = pd.Index(items["item_raw"])
    event_item = item_index.get_indexer(raw.events["item_raw"])
    missing = event_item < 0
    if missing.any():
        row = int(np.flatnonzero(missing)[0])
        raise DataError(
            raw.events_path,
            raw.columns.get("item", "item"),
            f"row {row + 1}: item {raw.events['item_raw'].iloc[row]!r} is not in the items file {raw.items_path}",
        )
    categories, item_category = _index(items["category_raw"].astype(str))
    users, event_user = _index(raw.events["user_raw"])
    events = pd.DataFrame(
        {
            "user": event_user,
            "item": event_item.astype(np.int64) + 1,
            "category": item_category[event_item],
            "ts": raw.events["ts"].to_numpy(np.int64),
            "behavior": raw.events["behavior"].to_numpy(np.int64),
        }
    )
    for name in raw.numeric_fields:
        events[NUMERIC_PREFIX + name] = raw.events[name].to_numpy(np.float32)
    order = np.lexsort((np.arange(len(events)), events["ts"].to_numpy(), events["user"].to_numpy()))
    events = events.iloc[order].reset_index(drop=True)

    if raw.samples is None:
        samples_raw = raw.events[["user_raw", "item_raw", "ts", "label"]]
    else:
        samples_raw = raw.samples
    s_item = item_index.get_indexer(samples_raw["item_raw"])
    if (s_item < 0).any():
        row = int(np.flatnonzero(s_item < 0)[0])
        raise DataError(
            raw.events_path, "item", f"sample {row + 1}: candidate item not in the items file"
        )
    s_user = users.get_indexer(samples_raw["user_raw"]) + 1
    if (s_user == 0).any():  # never a silent user 0: a sample needs its user's history
        row = int(np.flatnonzero(s_user == 0)[0])
        raise DataError(raw.events_path, "user", f"sample {row + 1}: user has no events")
    samples = pd.DataFrame(
        {
            "user": s_user.astype(np.int64),
            "item": s_item.astype(np.int64) + 1,
            "category": item_category[s_item],
            "ts": samples_raw["ts"].to_numpy(np.int64),
            "label": samples_raw["label"].to_numpy(np.float32),
        }
    )
    s_order = np.lexsort(
        (np.arange(len(samples)), samples["ts"].to_numpy(), samples["user"].to_numpy())
    )
    samples = samples.iloc[s_order].reset_index(drop=True)
    samples["cutoff"] = compute_cutoffs(
        events["user"].to_numpy(),
        events["ts"].to_numpy(),
        samples["user"].to_numpy(),
        samples["ts"].to_numpy(),
    )
    split = split_per_user(samples["user"].to_numpy(), samples["ts"].to_numpy())

    items_out = pd.DataFrame(
        {
            "item": np.arange(1, len(items) + 1, dtype=np.int64),
            "item_raw": items["item_raw"].astype(str).to_numpy(),
            "category": item_category,
            "category_raw": items["category_raw"].astype(str).to_numpy(),
        }
    )
    for name in raw.item_side_fields:
        _, codes = _index(items[name].astype(str))
        items_out[name] = codes
    for name in raw.text_fields:
        items_out[name] = items[name].fillna("").astype(str).to_numpy()
    users_out = pd.DataFrame(
        {"user": np.arange(1, len(users) + 1, dtype=np.int64), "user_raw": users.astype(str)}
    )

    lengths = np.bincount(events["user"].to_numpy(), minlength=len(users) + 1)[1:]
    splits: dict[str, Any] = {}
    parts = {}
    for name in ("train", "valid", "test"):
        part = samples[split == name].reset_index(drop=True)
        parts[name] = part
        splits[name] = {
            "rows": len(part),
            "positives": int(part["label"].sum()),
            "positive_rate": float(part["label"].mean()) if len(part) else None,
            "ts_min": int(part["ts"].min()) if len(part) else None,
            "ts_max": int(part["ts"].max()) if len(part) else None,
        }
    manifest = {
        "version": MANIFEST_VERSION,
        "dataset": raw.name,
        "source": raw.source,
        "label_rule": raw.label_rule,
        "split_rule": SPLIT_RULE,
        "seed": seed,
        "numeric_fields": list(raw.numeric_fields),
        "text_fields": list(raw.text_fields),
        "item_side_fields": list(raw.item_side_fields),
        "behaviors": list(raw.behaviors),
        "vocab": {
            "users": len(users) + 1,
            "items": len(items) + 1,
            "categories": len(categories) + 1,
            "behaviors": len(raw.behaviors) + 1,
        },
        "counts": {
            "events": len(events),
            "users": len(users),
            "items": int(events["item"].nunique()),
            "catalogue_items": len(items),
            "categories": int(events["category"].nunique()),
            "samples": len(samples),
            "history_mean": float(lengths.mean()),
            "history_median": float(np.median(lengths)),
            "history_max": int(lengths.max()),
        },
        "splits": splits,
    }

    def write(tmp: Path) -> None:
        tables = {
            "events.parquet": events,
            "items.parquet": items_out,
            "users.parquet": users_out,
        }
        schema: dict[str, dict[str, str]] = {}
        for name, frame in tables.items():
            table = pa.Table.from_pandas(frame, preserve_index=False)
            pq.write_table(table, tmp / name)
            schema[name] = {f.name: str(f.type) for f in table.schema}
        (tmp / "samples").mkdir()
        for name, part in parts.items():
            table = pa.Table.from_pandas(part, preserve_index=False)
            pq.write_table(table, tmp / "samples" / f"{name}.parquet", row_group_size=65536)
            schema[f"samples/{name}.parquet"] = {f.name: str(f.type) for f in table.schema}
        manifest["schema"] = schema
        manifest["prepare_seconds"] = round(time.time() - started, 3)
        write_json(tmp / "manifest.json", manifest)

    write_atomically(out_dir, write)
    return manifest
