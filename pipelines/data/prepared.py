"""The prepared-dataset directory: the one contract between `pipelines.prepare` and everything
that reads data (loader, content pipeline, trainer, benchmarks).

Layout of a prepared directory::

    DIR/
      events.parquet          one row per input behavior, sorted by (user, ts, original order)
      items.parquet           one row per item index (index 0 = padding / unknown is not stored)
      users.parquet           user index -> raw user id
      samples/train.parquet   (user, item, category, ts, label, cutoff) rows
      samples/valid.parquet
      samples/test.parquet
      manifest.json           schema, counts, vocabulary sizes, split boundaries, source

Conventions (all ids are dense indices, 0 is reserved for padding / unknown):

* ``events.parquet``: ``user`` int64 in [1, U], ``item`` int64 in [1, N], ``category`` int64 in
  [1, C], ``ts`` int64 seconds, ``behavior`` int64 in [1, nb], and one float32 column
  ``num_<name>`` per numeric field listed in ``manifest["numeric_fields"]``.
* ``items.parquet``: ``item`` int64, ``item_raw`` string, ``category`` int64, ``category_raw``
  string, any text columns listed in ``manifest["text_fields"]`` and extra categorical columns
  listed in ``manifest["item_side_fields"]`` (int64 indices).
* samples: ``user``, ``item``, ``category`` int64, ``ts`` int64, ``label`` float32 in {0, 1},
  ``cutoff`` int64 = number of the user's events with event ts strictly before the sample ts.
  The sample's history is ``events[offsets[user] : offsets[user] + cutoff]`` (CSR, see
  :class:`EventLog`), so no sample can see its own future.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SPLITS: tuple[str, ...] = ("train", "valid", "test")
EVENT_COLUMNS: tuple[str, ...] = ("user", "item", "category", "ts", "behavior")
SAMPLE_COLUMNS: tuple[str, ...] = ("user", "item", "category", "ts", "label", "cutoff")
NUMERIC_PREFIX = "num_"
MANIFEST_VERSION = 1


class DataError(ValueError):
    """Bad input data. The message names the file, the column and the first bad row."""

    def __init__(self, path: str | os.PathLike[str], column: str | None, message: str) -> None:
        self.path = str(path)
        self.column = column
        where = f"{self.path}" + (f", column '{column}'" if column else "")
        super().__init__(f"{where}: {message}")


@dataclass
class EventLog:
    """All events of a prepared dataset in CSR form by user.

    ``offsets`` has U + 2 entries (users are 1-based; user 0 owns no events), and the events of
    user ``u`` are rows ``offsets[u]:offsets[u + 1]`` of every column array, sorted by
    (ts, original order).
    """

    offsets: np.ndarray  # [U + 2] int64
    item: np.ndarray  # [E] int64
    category: np.ndarray  # [E] int64
    ts: np.ndarray  # [E] int64
    behavior: np.ndarray  # [E] int64
    numeric: np.ndarray  # [E, F] float32
    numeric_fields: tuple[str, ...]

    @property
    def num_users(self) -> int:
        return int(self.offsets.shape[0] - 2)

    def history_slice(self, user: int, cutoff: int) -> slice:
        start = int(self.offsets[user])
        return slice(start, start + int(cutoff))

    @staticmethod
    def from_table(table: pa.Table, numeric_fields: tuple[str, ...], num_users: int) -> EventLog:
        user = table.column("user").to_numpy().astype(np.int64, copy=False)
        if user.size and np.any(np.diff(user) < 0):
            raise ValueError("events.parquet must be sorted by user")
        counts = np.bincount(user, minlength=num_users + 1)
        offsets = np.zeros(num_users + 2, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        numeric = (
            np.stack(
                [
                    table.column(NUMERIC_PREFIX + f).to_numpy().astype(np.float32)
                    for f in numeric_fields
                ],
                axis=1,
            )
            if numeric_fields
            else np.zeros((user.shape[0], 0), dtype=np.float32)
        )
        return EventLog(
            offsets=offsets,
            item=table.column("item").to_numpy().astype(np.int64, copy=False),
            category=table.column("category").to_numpy().astype(np.int64, copy=False),
            ts=table.column("ts").to_numpy().astype(np.int64, copy=False),
            behavior=table.column("behavior").to_numpy().astype(np.int64, copy=False),
            numeric=numeric,
            numeric_fields=numeric_fields,
        )


@dataclass
class PreparedDataset:
    """Read access to a prepared directory (see module docstring)."""

    root: Path
    manifest: dict[str, Any]

    @staticmethod
    def open(root: str | os.PathLike[str]) -> PreparedDataset:
        root = Path(root)
        manifest_path = root / "manifest.json"
        if not manifest_path.is_file():
            raise DataError(manifest_path, None, "not a prepared dataset (manifest.json missing)")
        manifest = json.loads(manifest_path.read_text())
        return PreparedDataset(root=root, manifest=manifest)

    @property
    def numeric_fields(self) -> tuple[str, ...]:
        return tuple(self.manifest.get("numeric_fields", []))

    @property
    def vocab(self) -> dict[str, int]:
        """Embedding table sizes (max index + 1): users, items, categories, behaviors."""
        return dict(self.manifest["vocab"])

    def samples_path(self, split: str) -> Path:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
        return self.root / "samples" / f"{split}.parquet"

    def read_events(self, shards: list[int] | None = None) -> EventLog:
        """All events, or (``shards``) only those of the users in these user shards
        (:mod:`pipelines.data.shards`): the arrays then hold only their share; the CSR offsets
        still span every user index (the other users own no events)."""
        if shards is None:
            table = pq.read_table(self.root / "events.parquet")
        else:
            tables = [pq.read_table(self.shard_path(k, "events.parquet")) for k in shards]
            table = pa.concat_tables(tables)
            user = table.column("user").to_numpy()
            table = table.take(pa.array(np.argsort(user, kind="stable")))  # one user per shard
        return EventLog.from_table(
            table, self.numeric_fields, int(self.manifest["vocab"]["users"]) - 1
        )

    @property
    def shard_count(self) -> int:
        """S user shards written for this dataset (0: none; ``python -m pipelines.data.shards``)."""
        return int(self.manifest.get("shards", {}).get("count", 0))

    def shard_path(self, shard: int, name: str) -> Path:
        """``DIR/shards/<shard>/<name>``, e.g. ``events.parquet`` or ``samples/train.parquet``."""
        if not 0 <= shard < self.shard_count:
            raise DataError(
                self.root / "manifest.json", None, f"no user shard {shard} (has {self.shard_count})"
            )
        return self.root / "shards" / shard_name(shard) / name

    def read_items(self) -> pa.Table:
        return pq.read_table(self.root / "items.parquet")

    def read_samples(self, split: str) -> pa.Table:
        return pq.read_table(self.samples_path(split))


def shard_name(shard: int) -> str:
    """The directory name of user shard ``shard`` under ``DIR/shards/``."""
    return f"{shard:04d}"


def write_atomically(out_dir: str | os.PathLike[str], write: Callable[[Path], None]) -> Path:
    """Run ``write(tmp_dir)`` in a temporary sibling directory and rename it to ``out_dir``.

    On any exception the temporary directory is removed and ``out_dir`` is left untouched, so a
    failed job never leaves a half-written dataset behind. An existing ``out_dir`` is replaced
    only after the new one is complete.
    """
    out = Path(out_dir).absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private (0700); give it normal permissions
        write(tmp)
        if out.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, trash / out.name)
            os.replace(tmp, out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    raise TypeError(f"not JSON serializable: {type(value)}")
