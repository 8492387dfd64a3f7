"""Our prepared dataset as the peer's input: an aligned copy for both sides, then FuxiCTR LongCTR files.

Two steps, both plain numpy / pyarrow (no FuxiCTR import: the peer lives in its own venv):

1. :func:`derive_aligned` writes a prepared directory (the :mod:`pipelines.data.prepared`
   contract) that both trainers read: the train split optionally cut to a seeded subsample
   (row order kept), valid/test unchanged, and the events reduced to what FuxiCTR's LongCTR
   sequence can carry: item and category per event. The behavior id becomes 1 for every event
   and the numeric fields are dropped, because LongCTR looks each history position up in an
   *item* table (one row per item), so a per-event field (ml-1m's past rating, spotify's past
   outcome) cannot reach its models; our models would otherwise read it and win for that alone.
2. :func:`to_longctr` writes the three files LongCTR's ``LongCTRDataLoader`` reads:

   * ``{train,valid,test}.parquet``: one row per sample, scalar columns ``user_index``,
     ``item_index``, ``seq_len`` (= our ``cutoff``), ``user_id`` (= ``user_index``, the one
     embedded user feature) and ``label`` (int64, because the loader stacks every column into
     one array that it then uses as row indices);
   * ``user_info.parquet``: row ``u`` holds ``full_item_seq``, user ``u``'s whole item list in
     event order (row 0: user 0, empty). The loader takes ``full_item_seq[user][:seq_len]`` and
     its last ``max_len``, which is exactly our history ``events[offsets[u] : offsets[u] +
     cutoff]`` truncated to the last ``max_len`` as our loader does;
   * ``item_info.parquet``: row ``i`` is item ``i`` (row 0 = padding), with ``item_index``,
     ``item_id`` and ``cate_id``;
   * ``longctr.json``: vocabulary sizes and row counts for the peer's feature config.

Example::

    >>> root = derive_aligned(Path("data/ml1m"), Path("data/peers/ml1m"), 60_000, seed=0)
    >>> facts = to_longctr(root, root / "longctr")
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.data.prepared import (
    NUMERIC_PREFIX,
    SPLITS,
    PreparedDataset,
    write_atomically,
    write_json,
)
from pipelines.data.subsample import subsample_rows

LONGCTR_FILES = ("train.parquet", "valid.parquet", "test.parquet", "user_info.parquet",
                 "item_info.parquet", "longctr.json")  # fmt: skip


def derive_aligned(
    source: Path,
    out: Path,
    train_limit: int | None = None,
    seed: int = 0,
    min_history: int = 0,
    valid_limit: int | None = None,
    test_limit: int | None = None,
) -> Path:
    """The aligned prepared copy of ``source`` at ``out`` (see the module docstring).

    ``min_history``: keep only train samples with at least that many past events (throughput
    runs whose window must be full); ``valid_limit`` / ``test_limit``: seeded subsamples of those
    splits too.
    Reused when ``out`` already holds the same derivation (same source manifest and arguments).
    """
    ds = PreparedDataset.open(source)
    recipe = {
        "source": str(Path(source).resolve()),
        "source_dataset": ds.manifest.get("dataset"),
        "source_counts": ds.manifest.get("counts"),
        "train_limit": train_limit,
        "seed": seed,
        "min_history": min_history,
        "valid_limit": valid_limit,
        "test_limit": test_limit,
        "events": "behavior := 1, numeric fields dropped (LongCTR sequences carry item fields only)",
    }
    manifest_path = out / "manifest.json"
    if manifest_path.is_file():
        if json.loads(manifest_path.read_text()).get("peers_derivation") == recipe:
            return out

    def write(tmp: Path) -> None:
        events = pq.read_table(source / "events.parquet")
        keep = [c for c in events.column_names if not c.startswith(NUMERIC_PREFIX)]
        events = events.select(keep)
        ones = pa.array(np.ones(events.num_rows, dtype=np.int64))
        events = events.set_column(events.column_names.index("behavior"), "behavior", ones)
        pq.write_table(events, tmp / "events.parquet")
        for name in ("items.parquet", "users.parquet"):
            shutil.copyfile(source / name, tmp / name)
        (tmp / "samples").mkdir()
        manifest = json.loads((source / "manifest.json").read_text())
        for split in SPLITS:
            table = ds.read_samples(split)
            if split == "train" and min_history > 0:
                full = np.flatnonzero(table.column("cutoff").to_numpy() >= min_history)
                if full.size == 0:
                    raise ValueError(f"{ds.samples_path(split)}: no sample has {min_history} "
                                     "past events")  # fmt: skip
                table = table.take(pa.array(full))
            limit = {"train": train_limit, "valid": valid_limit, "test": test_limit}[split]
            table = table.take(pa.array(subsample_rows(table.num_rows, limit, seed)))
            pq.write_table(table, tmp / "samples" / f"{split}.parquet")
            labels = table.column("label").to_numpy()
            manifest["splits"][split].update(
                rows=int(table.num_rows),
                positives=int(labels.sum()),
                positive_rate=float(labels.mean()) if labels.size else 0.0,
            )
        manifest["numeric_fields"] = []
        manifest["behaviors"] = ["any"]
        manifest["vocab"]["behaviors"] = 2
        schema = manifest.get("schema", {}).get("events.parquet", {})
        for column in [c for c in schema if c.startswith(NUMERIC_PREFIX)]:
            del schema[column]
        manifest["counts"]["samples"] = sum(manifest["splits"][s]["rows"] for s in SPLITS)
        manifest["peers_derivation"] = recipe
        write_json(tmp / "manifest.json", manifest)

    return write_atomically(out, write)


def derive_window(
    source: Path, out: Path, window: int, rows: int, seed: int, eval_rows: int
) -> Path:
    """Aligned copy for a throughput run: ``rows`` train samples with >= ``window`` past events,
    ``eval_rows`` valid and test samples."""
    return derive_aligned(source, out, rows, seed, window, eval_rows, eval_rows)


def _samples_table(samples: pa.Table) -> pa.Table:
    user = samples.column("user").to_numpy().astype(np.int64)
    label = samples.column("label").to_numpy()
    if not np.all((label == 0) | (label == 1)):
        raise ValueError("samples column 'label' must be 0 or 1")
    return pa.table(
        {
            "user_index": user,
            "item_index": samples.column("item").to_numpy().astype(np.int64),
            "seq_len": samples.column("cutoff").to_numpy().astype(np.int64),
            "user_id": user,
            "label": label.astype(np.int64),
        }
    )


def to_longctr(root: Path, out: Path) -> dict[str, Any]:
    """Write the LongCTR files of the prepared dataset ``root`` into ``out``; returns the facts
    (``longctr.json``): vocab sizes (max index + 1) and rows per split."""
    ds = PreparedDataset.open(root)
    events = ds.read_events()
    vocab = ds.vocab
    items = ds.read_items()
    item_ids = items.column("item").to_numpy().astype(np.int64)
    if item_ids.size and (item_ids.min() < 1 or item_ids.max() >= vocab["items"]):
        raise ValueError(f"{root / 'items.parquet'}: column 'item' outside [1, {vocab['items']})")
    item_category = np.zeros(vocab["items"], dtype=np.int64)
    item_category[item_ids] = items.column("category").to_numpy().astype(np.int64)

    def write(tmp: Path) -> None:
        facts: dict[str, Any] = {"vocab": dict(vocab), "rows": {}, "source": str(root)}
        for split in SPLITS:
            samples = ds.read_samples(split)
            users = samples.column("user").to_numpy()
            cutoff = samples.column("cutoff").to_numpy()
            lengths = np.diff(events.offsets)
            if np.any(cutoff < 0) or np.any(cutoff > lengths[users]):
                raise ValueError(
                    f"{ds.samples_path(split)}: column 'cutoff' outside the user's events"
                )
            pq.write_table(_samples_table(samples), tmp / f"{split}.parquet")
            facts["rows"][split] = int(samples.num_rows)
        sequences = [
            events.item[events.offsets[u] : events.offsets[u + 1]]
            for u in range(events.offsets.shape[0] - 1)
        ]
        user_info = pa.table({"full_item_seq": pa.array(sequences, type=pa.list_(pa.int64()))})
        pq.write_table(user_info, tmp / "user_info.parquet")
        index = np.arange(vocab["items"], dtype=np.int64)
        item_info = pa.table({"item_index": index, "item_id": index, "cate_id": item_category})
        pq.write_table(item_info, tmp / "item_info.parquet")
        facts["max_history"] = int(np.diff(events.offsets).max(initial=0))
        write_json(tmp / "longctr.json", facts)

    write_atomically(out, write)
    return json.loads((out / "longctr.json").read_text())
