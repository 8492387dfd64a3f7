"""Stream samples of a prepared dataset as :class:`~pipelines.data.batch.Batch` objects.

* Samples are read by parquet row group (never all at once); events are loaded once per process
  as a CSR :class:`~pipelines.data.prepared.EventLog` (worker processes share it by fork).
* Rank sharding by global batch: every rank scans the same (seeded) stream of sample rows, cut
  into global batches of ``world_size * batch_size`` rows, and takes its own ``batch_size`` slice
  of each. Together the ranks see every sample exactly once, N ranks train on exactly the global
  batches one rank with an N-times larger batch would see, and every rank yields the same number
  of batches (no communication needed, so collectives never hang). ``drop_last`` drops the
  ragged last global batch; otherwise the slices of it that are short or empty are padded with
  copies of a real row carrying weight 0. The cost is that every rank reads the (small) sample
  columns of every row group.
* The history of a sample is the most recent ``max_len`` events strictly before its ts, gathered
  for the whole batch at once (:func:`gather_histories`; :func:`gather_histories_reference` is
  the per-sample twin).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from pipelines.data.batch import Batch, make_batch
from pipelines.data.prepared import DataError, EventLog, PreparedDataset
from pipelines.data.shards import shards_of_rank


@dataclass
class LoaderConfig:
    """How samples become batches.

    Attributes:
        batch_size: samples per batch on each rank.
        max_len: keep the most recent ``max_len`` events of each history.
        shuffle: shuffle row groups and rows (within a buffer) each epoch.
        seed: base seed; the order of epoch e depends on (seed, e) only.
        num_workers: worker processes (0 = in the calling process).
        drop_last: drop the ragged tail (training) instead of padding it with weight-0 rows.
        shuffle_buffer_rows: rows shuffled together (bounded memory).
        user_shards: read only this rank's user shards (:mod:`pipelines.data.shards`): rank r of
            W takes shards r, r + W, ...; its events and samples are its share, not the log.
            Every rank yields the same number of batches: the most any rank needs (a rank with
            fewer samples pads with weight-0 rows), or with ``drop_last`` the fewest full
            batches any rank has.
        shard_at_a_time: with ``user_shards``, hold one shard's events at a time instead of all
            of the rank's: the rank visits its shards in an epoch-seeded order and cuts each
            shard's samples into its own batches (a shard's short last batch is padded with
            weight-0 rows, or dropped with ``drop_last``), so memory per rank is bounded by the
            largest shard; choose S so that a shard fits.
    """

    batch_size: int = 512
    max_len: int = 512
    shuffle: bool = True
    seed: int = 0
    num_workers: int = 0
    drop_last: bool = False
    shuffle_buffer_rows: int = 65536
    user_shards: bool = False
    shard_at_a_time: bool = False

    def __post_init__(self) -> None:
        if self.shard_at_a_time and not self.user_shards:
            raise ValueError("shard_at_a_time needs user_shards: true")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {self.max_len}")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")


def gather_histories(
    events: EventLog, users: np.ndarray, cutoffs: np.ndarray, max_len: int
) -> tuple[np.ndarray, np.ndarray]:
    """Row indices into ``events`` of every sample's truncated history, concatenated.

    Returns ``(rows [N], lengths [B])``; sample i's rows are the most recent
    ``min(cutoff_i, max_len)`` events before its ts, oldest first.
    """
    lengths = np.minimum(cutoffs, max_len).astype(np.int64)
    starts = events.offsets[users] + cutoffs - lengths
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64), lengths
    # rows = starts[i] + (0 .. lengths[i]-1) for every i, without a Python loop
    batch_offsets = np.cumsum(lengths) - lengths
    rows = np.arange(total, dtype=np.int64) - np.repeat(batch_offsets - starts, lengths)
    return rows, lengths


def gather_histories_reference(
    events: EventLog, users: np.ndarray, cutoffs: np.ndarray, max_len: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample twin of :func:`gather_histories`."""
    parts, lengths = [], []
    for user, cutoff in zip(users.tolist(), cutoffs.tolist()):
        s = events.history_slice(user, cutoff)
        rows = np.arange(s.start, s.stop, dtype=np.int64)[-max_len:] if cutoff else rows_empty()
        parts.append(rows)
        lengths.append(rows.shape[0])
    rows = np.concatenate(parts) if parts else rows_empty()
    return rows, np.asarray(lengths, dtype=np.int64)


def rows_empty() -> np.ndarray:
    return np.zeros(0, dtype=np.int64)


def build_batch(
    events: EventLog, samples: dict[str, np.ndarray], max_len: int, weights: np.ndarray
) -> Batch:
    """One :class:`Batch` from sample columns (``user, item, category, ts, label, cutoff``)."""
    rows, lengths = gather_histories(events, samples["user"], samples["cutoff"], max_len)
    sample_ts = np.repeat(samples["ts"], lengths)
    age = (sample_ts - events.ts[rows]).astype(np.float32)
    return make_batch(
        user=torch.from_numpy(samples["user"]),
        item=torch.from_numpy(samples["item"]),
        category=torch.from_numpy(samples["category"]),
        labels=torch.from_numpy(samples["label"].astype(np.float32)),
        timestamps=torch.from_numpy(samples["ts"]),
        history_lengths=torch.from_numpy(lengths),
        history_item=torch.from_numpy(events.item[rows]),
        history_category=torch.from_numpy(events.category[rows]),
        history_behavior=torch.from_numpy(events.behavior[rows]),
        history_age=torch.from_numpy(age),
        history_numeric=torch.from_numpy(events.numeric[rows]),
        weights=torch.from_numpy(weights.astype(np.float32)),
    )


_COLUMNS = ("user", "item", "category", "ts", "label", "cutoff")


class _SampleStream(IterableDataset):
    """Yields whole batches of this rank's row range; workers split it by row-group chunks."""

    def __init__(self, loader: SampleLoader) -> None:
        super().__init__()
        self.loader = loader

    def __iter__(self) -> Iterator[Batch]:
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        yield from self.loader._iter_worker(worker, workers)


class SampleLoader:
    """Iterate ``samples/{split}.parquet`` of a prepared dataset as batches for one rank.

    Example:
        >>> import tempfile
        >>> from pipelines.data.synthetic import SyntheticConfig, write_synthetic_dataset
        >>> tmp = tempfile.TemporaryDirectory()
        >>> tiny = SyntheticConfig(users=8, mean_length=30, max_length=60, items=200, seed=1)
        >>> root = write_synthetic_dataset(f"{tmp.name}/tiny", tiny)  # or data/ml1m
        >>> loader = SampleLoader(root, "train", LoaderConfig(batch_size=16, max_len=20))
        >>> batch = next(iter(loader))
        >>> batch.batch_size, bool(batch.history_lengths.max() <= 20)
        (16, True)
        >>> tmp.cleanup()
    """

    def __init__(
        self,
        dataset_dir: str | os.PathLike[str],
        split: str,
        config: LoaderConfig | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} not in [0, {world_size})")
        self.config = config or LoaderConfig()
        self.dataset = PreparedDataset.open(dataset_dir)
        self.path: Path = self.dataset.samples_path(split)
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.split = split
        self.shards: list[int] | None = None
        self._events: EventLog | None = None
        if self.config.user_shards:
            self._init_user_shards()
            return
        meta = pq.ParquetFile(self.path).metadata
        group_rows = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
        self._group_starts = np.concatenate([[0], np.cumsum(group_rows)]).astype(np.int64)
        self.total_rows = int(self._group_starts[-1])
        global_batch = self.config.batch_size * world_size
        if self.config.drop_last:
            self._num_batches = self.total_rows // global_batch
        else:
            self._num_batches = math.ceil(self.total_rows / global_batch)

    def _init_user_shards(self) -> None:
        count = self.dataset.shard_count
        if count == 0:
            raise DataError(
                self.dataset.root / "manifest.json",
                None,
                "loader.user_shards needs user shards; write them with "
                f"python -m pipelines.data.shards {self.dataset.root} --shards N",
            )
        self.shards = shards_of_rank(count, self.rank, self.world_size)
        per_shard = self.dataset.manifest["shards"]["samples"][self.split]
        per_rank = [
            sum(per_shard[k] for k in shards_of_rank(count, r, self.world_size))
            for r in range(self.world_size)
        ]
        self.total_rows = sum(per_rank)
        size = self.config.batch_size
        if self.config.shard_at_a_time:  # every shard is cut into its own batches
            cut = (lambda n: n // size) if self.config.drop_last else (lambda n: -(-n // size))
            per_rank = [
                sum(cut(per_shard[k]) for k in shards_of_rank(count, r, self.world_size))
                for r in range(self.world_size)
            ]
            pick = min if self.config.drop_last else max
            self._num_batches = pick(per_rank)
        elif self.config.drop_last:
            self._num_batches = min(rows // size for rows in per_rank)
        else:
            self._num_batches = max(math.ceil(rows / size) for rows in per_rank)
        self._shard_files = [
            self.dataset.shard_path(k, f"samples/{self.split}.parquet") for k in self.shards
        ]

    @property
    def events(self) -> EventLog:
        if self._events is None:
            self._events = self.dataset.read_events(self.shards)
        return self._events

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self._num_batches

    def __iter__(self) -> Iterator[Batch]:
        if not self.config.shard_at_a_time:
            _ = self.events  # load once before forking workers
        if self.config.num_workers == 0:
            yield from self._iter_worker(0, 1)
            return
        data = DataLoader(
            _SampleStream(self),
            batch_size=None,
            num_workers=self.config.num_workers,
            multiprocessing_context="fork",
        )
        yield from data

    # -- internals ---------------------------------------------------------------------------

    def _chunks(self) -> list[tuple[int, int]]:
        """Row groups as (start, end) row ranges, in this epoch's order (same on every rank)."""
        chunks = [
            (int(self._group_starts[g]), int(self._group_starts[g + 1]))
            for g in range(len(self._group_starts) - 1)
            if self._group_starts[g + 1] > self._group_starts[g]
        ]
        if self.config.shuffle:
            rng = np.random.default_rng([self.config.seed, self.epoch])
            chunks = [chunks[i] for i in rng.permutation(len(chunks))]
        return chunks

    def _read_rows(self, start: int, end: int) -> dict[str, np.ndarray]:
        group = int(np.searchsorted(self._group_starts, start, side="right") - 1)
        table = pq.ParquetFile(self.path).read_row_group(group, columns=list(_COLUMNS))
        offset = start - int(self._group_starts[group])
        table = table.slice(offset, end - start)
        return {c: table.column(c).to_numpy() for c in _COLUMNS}

    def _iter_worker(self, worker: int, workers: int) -> Iterator[Batch]:
        """This rank's batches; worker w builds batches w, w + workers, ... in order."""
        cfg = self.config
        if cfg.user_shards:
            yield from self._iter_user_shards(worker, workers)
            return
        rng = np.random.default_rng([cfg.seed, self.epoch, 1])
        lo, hi = self.rank * cfg.batch_size, (self.rank + 1) * cfg.batch_size
        for index, columns in enumerate(self._global_batches(rng)):
            if index >= self._num_batches:
                return
            if index % workers != worker:
                continue
            mine = {c: v[lo:hi] for c, v in columns.items()}
            if mine["user"].shape[0] < cfg.batch_size:
                mine = _pad(mine, cfg.batch_size, {c: v[:1] for c, v in columns.items()})
            yield build_batch(self.events, mine, cfg.max_len, mine.pop("_weight"))

    def _iter_user_shards(self, worker: int, workers: int) -> Iterator[Batch]:
        """Batches of this rank's own shards, then weight-0 batches up to the common count."""
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, self.epoch, 1, self.rank])
        filler: dict[str, np.ndarray] | None = None
        index = -1
        events: Callable[[], EventLog] = lambda: self.events  # noqa: E731
        for index, (events, columns) in enumerate(self._shard_batches(rng)):
            if index >= self._num_batches:
                return
            filler = {c: v[:1] for c, v in columns.items()}
            if index % workers != worker:
                continue
            if columns["user"].shape[0] < cfg.batch_size:
                columns = _pad(columns, cfg.batch_size, filler)
            yield build_batch(events(), columns, cfg.max_len, columns.pop("_weight"))
        if filler is None or cfg.shard_at_a_time:  # user 0 owns no events (cutoff 0): any
            filler = {  # EventLog serves it, so shard_at_a_time never loads another shard
                c: np.zeros(1, dtype=np.float32 if c == "label" else np.int64) for c in _COLUMNS
            }
        if cfg.shard_at_a_time and index < 0:
            events = lambda: self.dataset.read_events(self.shards[:1])  # noqa: E731
        for pad_index in range(index + 1, self._num_batches):
            if pad_index % workers == worker:
                empty = {c: v[:0] for c, v in filler.items()}
                empty["_weight"] = np.zeros(0, dtype=np.float32)
                columns = _pad(empty, cfg.batch_size, filler)
                yield build_batch(events(), columns, cfg.max_len, columns.pop("_weight"))

    def _shard_batches(
        self, rng: np.random.Generator
    ) -> Iterator[tuple[Callable[[], EventLog], dict[str, np.ndarray]]]:
        """(events of the batch's users, sample columns) of this rank's batches: over all its
        shards at once, or (``shard_at_a_time``) shard by shard, loading each shard's events
        only when a batch of this worker needs them and releasing them after the shard."""
        if not self.config.shard_at_a_time:
            for columns in self._local_batches(rng, self._shard_files):
                yield (lambda: self.events), columns
            return
        order = list(range(len(self.shards)))
        if self.config.shuffle:
            order = rng.permutation(len(order)).tolist()
        for i in order:
            shard = self.shards[i]
            self._events = None

            def events(shard: int = shard) -> EventLog:
                if self._events is None:
                    self._events = self.dataset.read_events([shard])
                return self._events

            for columns in self._local_batches(rng, [self._shard_files[i]]):
                yield events, columns

    def _local_batches(
        self, rng: np.random.Generator, files: list[Path]
    ) -> Iterator[dict[str, np.ndarray]]:
        """Sample columns of batches from shard sample ``files`` (row groups shuffled, rows
        shuffled within a buffer), the last one possibly short."""
        groups = [
            (path, g) for path in files for g in range(pq.ParquetFile(path).metadata.num_row_groups)
        ]
        if self.config.shuffle:
            groups = [groups[i] for i in rng.permutation(len(groups))]

        def pieces() -> Iterator[dict[str, np.ndarray]]:
            for path, g in groups:
                table = pq.ParquetFile(path).read_row_group(g, columns=list(_COLUMNS))
                yield {c: table.column(c).to_numpy() for c in _COLUMNS}

        yield from _buffered_batches(pieces(), self.config.batch_size, self.config, rng)

    def _global_batches(self, rng: np.random.Generator) -> Iterator[dict[str, np.ndarray]]:
        """Sample columns of each global batch (identical on every rank and worker)."""
        pieces = (self._read_rows(start, end) for start, end in self._chunks())
        size = self.config.batch_size * self.world_size
        yield from _buffered_batches(pieces, size, self.config, rng)


def _buffered_batches(
    pieces: Iterator[dict[str, np.ndarray]],
    size: int,
    cfg: LoaderConfig,
    rng: np.random.Generator,
) -> Iterator[dict[str, np.ndarray]]:
    """Cut a stream of sample-column pieces into batches of ``size`` rows: pieces are buffered
    up to ``cfg.shuffle_buffer_rows`` rows and shuffled together (``cfg.shuffle``), the rows
    left over carry into the next buffer, and the ragged tail is yielded unless ``drop_last``."""
    buffer: list[dict[str, np.ndarray]] = []
    buffered = 0
    carry: dict[str, np.ndarray] | None = None

    def flush() -> Iterator[dict[str, np.ndarray]]:
        nonlocal buffer, buffered, carry
        merged = {c: np.concatenate([b[c] for b in buffer]) for c in _COLUMNS}
        if cfg.shuffle:
            perm = rng.permutation(merged["user"].shape[0])
            merged = {c: v[perm] for c, v in merged.items()}
        if carry is not None:
            merged = {c: np.concatenate([carry[c], merged[c]]) for c in _COLUMNS}
            carry = None
        n = merged["user"].shape[0]
        full = n // size * size
        for s in range(0, full, size):
            yield _with_weight({c: v[s : s + size] for c, v in merged.items()})
        if full < n:
            carry = {c: v[full:] for c, v in merged.items()}
        buffer, buffered = [], 0

    for piece in pieces:
        buffer.append(piece)
        buffered += piece["user"].shape[0]
        if buffered >= cfg.shuffle_buffer_rows:
            yield from flush()
    if buffer:
        yield from flush()
    if carry is not None and not cfg.drop_last:
        yield _with_weight(carry)


def _with_weight(cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    cols["_weight"] = np.ones(cols["user"].shape[0], dtype=np.float32)
    return cols


def _pad(
    cols: dict[str, np.ndarray], size: int, filler: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Pad ``cols`` (with its ``_weight``) to ``size`` rows with weight-0 copies of ``filler``."""
    n = cols["user"].shape[0]
    missing = max(size - n, 0)
    out = {c: np.concatenate([cols[c], np.repeat(filler[c], missing)]) for c in _COLUMNS}
    out["_weight"] = np.concatenate([cols["_weight"], np.zeros(missing, dtype=np.float32)])
    return out
