"""User-sharded copies of a prepared dataset: each rank reads only the users it trains on.

Users are hashed into S shards (:func:`shard_of`: the splitmix64 finaliser of the user index,
mod S, so neighbouring indices spread evenly and the split depends on nothing but S). Every
shard holds its users' events and samples in the prepared layout::

    DIR/shards/0000/events.parquet          this shard's users' events, sorted by (user, ts)
    DIR/shards/0000/samples/{train,valid,test}.parquet
    ...
    DIR/manifest.json                       "shards": {count, hash, users, events, samples}

The top-level files stay as they are (everything else keeps reading them); the shards are a
second copy that :class:`~pipelines.data.loader.SampleLoader` reads with
``LoaderConfig(user_shards=True)``: rank r of W takes shards r, r + W, r + 2W, ... Writing
streams both inputs by record batch (memory bounded by one batch per open shard writer), into
a temporary directory renamed into place when complete, then the manifest is replaced
atomically.

    python -m pipelines.data.shards data/ml1m --shards 8
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.data.prepared import SPLITS, DataError, PreparedDataset, shard_name, write_json

HASH_NAME = "splitmix64(user) % S"
_BATCH_ROWS = 1 << 20


def shard_of(users: np.ndarray, num_shards: int) -> np.ndarray:
    """``[n]`` int64 shard in ``[0, num_shards)`` of each user index (``HASH_NAME``)."""
    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    z = users.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z % np.uint64(num_shards)).astype(np.int64)


def shards_of_rank(num_shards: int, rank: int, world_size: int) -> list[int]:
    """The shards rank ``rank`` of ``world_size`` reads: r, r + W, r + 2W, ..."""
    if num_shards < world_size:
        raise ValueError(
            f"{num_shards} user shards cannot feed {world_size} ranks (each rank needs >= 1); "
            f"write more with python -m pipelines.data.shards DIR --shards {world_size}"
        )
    return list(range(rank, num_shards, world_size))


def _split_file(source: Path, targets: list[Path], num_shards: int) -> tuple[list[int], list[int]]:
    """Route every row of ``source`` to ``targets[shard_of(user)]``; returns (rows, users) per
    shard. Streams by record batch; each target keeps the source's row order and schema."""
    reader = pq.ParquetFile(source)
    writers: list[pq.ParquetWriter | None] = [None] * num_shards
    rows, users = [0] * num_shards, [set() for _ in range(num_shards)]
    schema = reader.schema_arrow
    try:
        for batch in reader.iter_batches(batch_size=_BATCH_ROWS):
            user = batch.column("user").to_numpy(zero_copy_only=False).astype(np.int64)
            shard = shard_of(user, num_shards)
            for k in np.unique(shard).tolist():
                keep = np.nonzero(shard == k)[0]
                if writers[k] is None:
                    targets[k].parent.mkdir(parents=True, exist_ok=True)
                    writers[k] = pq.ParquetWriter(targets[k], schema)
                writers[k].write_batch(batch.take(pa.array(keep)))
                rows[k] += int(keep.size)
                users[k].update(np.unique(user[keep]).tolist())
    finally:
        for writer in writers:
            if writer is not None:
                writer.close()
    for k, target in enumerate(targets):  # a shard with no rows still gets an (empty) file
        if writers[k] is None:
            target.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(schema.empty_table(), target)
    return rows, [len(u) for u in users]


def write_shards(dataset_dir: str | os.PathLike[str], num_shards: int) -> dict[str, Any]:
    """Write ``DIR/shards/`` (replacing any earlier shards) and list them in the manifest.

    Returns the manifest's ``shards`` entry. Raises :class:`DataError` for a directory that is
    not a prepared dataset.
    """
    dataset = PreparedDataset.open(dataset_dir)
    root = dataset.root
    if num_shards < 1:
        raise ValueError(f"--shards must be >= 1, got {num_shards}")
    tmp = Path(tempfile.mkdtemp(prefix=".shards.tmp-", dir=root))
    try:
        staged = [tmp / shard_name(k) for k in range(num_shards)]
        events, users = _split_file(
            root / "events.parquet", [d / "events.parquet" for d in staged], num_shards
        )
        samples = {}
        for split in SPLITS:
            path = dataset.samples_path(split)
            if not path.is_file():
                raise DataError(path, None, "missing: a prepared dataset has every split")
            samples[split] = _split_file(
                path, [d / "samples" / f"{split}.parquet" for d in staged], num_shards
            )[0]
        entry = {
            "count": num_shards,
            "hash": HASH_NAME,
            "users": users,
            "events": events,
            "samples": samples,
        }
        old = root / "shards"
        if old.exists():
            trash = Path(tempfile.mkdtemp(prefix=".shards.old-", dir=root))
            os.replace(old, trash / "shards")
            shutil.rmtree(trash, ignore_errors=True)
        os.replace(tmp, old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    manifest = dict(dataset.manifest, shards=entry)
    staged_manifest = root / ".manifest.json.tmp"
    write_json(staged_manifest, manifest)
    os.replace(staged_manifest, root / "manifest.json")
    return entry


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path, help="a prepared dataset directory")
    parser.add_argument("--shards", type=int, required=True, help="S, user shards to write")
    args = parser.parse_args(argv)
    try:
        entry = write_shards(args.dataset, args.shards)
    except (DataError, ValueError) as err:
        print(f"error: {err}")
        return 2
    print(
        f"wrote {entry['count']} user shards under {args.dataset / 'shards'}: users per shard "
        f"{min(entry['users'])}..{max(entry['users'])}, train samples per shard "
        f"{min(entry['samples']['train'])}..{max(entry['samples']['train'])}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
