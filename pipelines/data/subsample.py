"""A prepared dataset whose train split is a seeded subsample of another's.

When training on every sample costs more CPU than a benchmark has (lifelong histories of
10,000 events make each sample expensive), every model can train on the *same* seeded
subsample of the train samples while the valid and test splits stay whole:

.. code-block:: bash

    python -m pipelines.data.subsample data/spotify --train-rows 40000 --seed 0 \\
        --out data/spotify-train40000-s0

The copy holds the source's events, items and users unchanged (hard-linked where the file
system allows, else copied), the valid and test samples unchanged, and ``samples/train.parquet``
cut to ``train_rows`` rows drawn without replacement by ``numpy.random.default_rng(seed)``, in
their original order. The manifest's train counts describe the subsample and
``manifest["subsample"]`` records how it was drawn (source, its train rows, rows, seed).
Statistics stored in the source manifest (numeric scaling fit on the full train split) are kept:
they describe the dataset, not the subsample. User shards and ``content/`` are not carried: pass
the source's content files by path (``data.groups``, ``data.content``).

The copy is written atomically (a temporary sibling directory, then a rename) and reused when it
already holds the same derivation.

Example:
    >>> import tempfile
    >>> from pipelines.data.synthetic import SyntheticConfig, write_synthetic_dataset
    >>> tmp = tempfile.TemporaryDirectory()
    >>> src = write_synthetic_dataset(f"{tmp.name}/src", SyntheticConfig(users=8, seed=1))
    >>> out = derive_train_subsample(src, f"{tmp.name}/sub", train_rows=50, seed=0)
    >>> PreparedDataset.open(out).read_samples("train").num_rows
    50
    >>> tmp.cleanup()
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.data.prepared import SPLITS, DataError, PreparedDataset, write_atomically, write_json

#: carried to the copy (samples/valid, samples/test too); everything else is not
_TOP_FILES = ("events.parquet", "items.parquet", "users.parquet")


def subsample_rows(rows: int, limit: int | None, seed: int) -> np.ndarray:
    """Sorted indices of a seeded subsample of ``limit`` of ``rows`` rows (all when ``limit`` is
    None or at least ``rows``).

    Raises:
        ValueError: ``limit`` < 1.
    """
    if limit is not None and limit < 1:
        raise ValueError(f"a subsample must keep >= 1 rows, got {limit}")
    if limit is None or limit >= rows:
        return np.arange(rows, dtype=np.int64)
    chosen = np.random.default_rng(seed).choice(rows, size=limit, replace=False)
    return np.sort(chosen).astype(np.int64)


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system, or links not allowed
        shutil.copyfile(source, target)


def derive_train_subsample(
    source: str | os.PathLike[str], out: str | os.PathLike[str], train_rows: int, seed: int = 0
) -> Path:
    """Write (or reuse) the copy of prepared ``source`` at ``out`` whose train split keeps a
    seeded ``train_rows``-row subsample (the module docstring says what else is carried).

    Raises:
        DataError: ``source`` is not a prepared dataset or lacks one of its files.
        ValueError: ``train_rows`` < 1.
    """
    if train_rows < 1:
        raise ValueError(f"train_rows must be >= 1, got {train_rows}")
    source, out = Path(source), Path(out)
    ds = PreparedDataset.open(source)
    for name in (*_TOP_FILES, *(f"samples/{s}.parquet" for s in SPLITS)):
        if not (source / name).is_file():
            raise DataError(source / name, None, "missing from the prepared dataset")
    train_meta = pq.ParquetFile(ds.samples_path("train")).metadata
    recipe: dict[str, Any] = {
        "source": str(source.resolve()),
        "source_dataset": ds.manifest.get("dataset"),
        "source_train_rows": int(train_meta.num_rows),
        "train_rows": int(min(train_rows, train_meta.num_rows)),
        "seed": int(seed),
    }
    manifest_path = out / "manifest.json"
    if manifest_path.is_file():
        if json.loads(manifest_path.read_text()).get("subsample") == recipe:
            return out

    def write(tmp: Path) -> None:
        for name in _TOP_FILES:
            _link_or_copy(source / name, tmp / name)
        (tmp / "samples").mkdir()
        for split in ("valid", "test"):
            _link_or_copy(ds.samples_path(split), tmp / "samples" / f"{split}.parquet")
        table = ds.read_samples("train")
        keep = subsample_rows(table.num_rows, train_rows, seed)
        table = table.take(pa.array(keep))
        group = train_meta.row_group(0).num_rows if train_meta.num_row_groups else 65536
        pq.write_table(table, tmp / "samples" / "train.parquet", row_group_size=max(group, 1))
        manifest = dict(ds.manifest)
        manifest.pop("shards", None)
        labels = table.column("label").to_numpy()
        splits = {k: dict(v) for k, v in manifest.get("splits", {}).items()}
        splits.setdefault("train", {}).update(
            rows=int(table.num_rows),
            positives=int(labels.sum()),
            positive_rate=float(labels.mean()) if labels.size else 0.0,
        )
        manifest["splits"] = splits
        if "samples" in manifest.get("counts", {}):
            counts = dict(manifest["counts"])
            counts["samples"] = sum(int(splits[s]["rows"]) for s in SPLITS if s in splits)
            manifest["counts"] = counts
        manifest["subsample"] = recipe
        write_json(tmp / "manifest.json", manifest)

    return write_atomically(out, write)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.data.subsample",
        description="Copy a prepared dataset with its train split cut to a seeded subsample "
        "(valid and test whole).",
    )
    parser.add_argument("source", help="prepared dataset directory")
    parser.add_argument("--train-rows", type=int, required=True, help="train samples to keep")
    parser.add_argument("--seed", type=int, default=0, help="seed of the draw (default 0)")
    parser.add_argument("--out", required=True, help="output directory (written atomically)")
    args = parser.parse_args(argv)
    if args.train_rows < 1:
        parser.error("--train-rows must be >= 1")
    try:
        out = derive_train_subsample(args.source, args.out, args.train_rows, args.seed)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    kept = PreparedDataset.open(out).manifest["splits"]["train"]["rows"]
    print(f"written {out}: train {kept} rows (seed {args.seed}); valid and test whole")
    return 0


if __name__ == "__main__":
    sys.exit(main())
