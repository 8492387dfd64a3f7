"""SampleLoader: determinism, exact-once rank sharding, workers, history gather vs reference."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.data.loader import (
    LoaderConfig,
    SampleLoader,
    gather_histories,
    gather_histories_reference,
)
from pipelines.data.prepared import EventLog


def write_random_prepared(root: Path, users: int = 30, seed: int = 0, row_group: int = 37) -> Path:
    """A small, valid prepared directory with random events and per-event samples."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, 60, users)
    user = np.repeat(np.arange(1, users + 1), lengths)
    ts = np.concatenate([np.sort(rng.integers(0, 500, n)) for n in lengths]).astype(np.int64)
    n = user.shape[0]
    events = pa.table(
        {
            "user": user.astype(np.int64),
            "item": rng.integers(1, 50, n).astype(np.int64),
            "category": rng.integers(1, 6, n).astype(np.int64),
            "ts": ts,
            "behavior": rng.integers(1, 4, n).astype(np.int64),
            "num_dwell": rng.random(n).astype(np.float32),
        }
    )
    root.mkdir(parents=True, exist_ok=True)
    pq.write_table(events, root / "events.parquet")
    # one sample per event at its ts; cutoff = events strictly before ts
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    cutoff = np.empty(n, dtype=np.int64)
    for u in range(users):
        seg = ts[offsets[u] : offsets[u + 1]]
        cutoff[offsets[u] : offsets[u + 1]] = np.searchsorted(seg, seg, side="left")
    samples = pa.table(
        {
            "user": user.astype(np.int64),
            "item": rng.integers(1, 50, n).astype(np.int64),
            "category": rng.integers(1, 6, n).astype(np.int64),
            "ts": ts,
            "label": rng.integers(0, 2, n).astype(np.float32),
            "cutoff": cutoff,
        }
    )
    (root / "samples").mkdir(exist_ok=True)
    for split in ("train", "valid", "test"):
        pq.write_table(samples, root / "samples" / f"{split}.parquet", row_group_size=row_group)
    manifest = {
        "version": 1,
        "dataset": "random",
        "numeric_fields": ["dwell"],
        "vocab": {"users": users + 1, "items": 50, "categories": 6, "behaviors": 4},
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_random_prepared(tmp_path_factory.mktemp("prepared"))


def _keys(batch, real_only: bool = True) -> list[tuple[int, int, int]]:
    users = batch.users.values().tolist()
    items = batch.items.values()[: batch.batch_size].tolist()
    ts = batch.timestamps.tolist()
    keep = batch.weights.tolist()
    return [(u, i, t) for u, i, t, w in zip(users, items, ts, keep) if w > 0 or not real_only]


def _all_keys(path: Path) -> Counter:
    t = pq.read_table(path / "samples" / "train.parquet").to_pandas()
    return Counter(zip(t["user"].tolist(), t["item"].tolist(), t["ts"].tolist()))


def test_same_seed_same_batches_and_epochs_reorder(prepared: Path) -> None:
    cfg = LoaderConfig(batch_size=16, max_len=8, seed=3, shuffle_buffer_rows=50)
    a = [_keys(b) for b in SampleLoader(prepared, "train", cfg)]
    b = [_keys(b) for b in SampleLoader(prepared, "train", cfg)]
    assert a == b
    other = SampleLoader(prepared, "train", cfg)
    other.set_epoch(1)
    c = [_keys(x) for x in other]
    assert c != a
    assert Counter(k for batch in c for k in batch) == Counter(k for batch in a for k in batch)


@pytest.mark.parametrize("drop_last", [False, True])
def test_two_ranks_see_every_sample_once_with_equal_lengths(
    prepared: Path, drop_last: bool
) -> None:
    cfg = LoaderConfig(batch_size=16, max_len=8, drop_last=drop_last)
    loaders = [SampleLoader(prepared, "train", cfg, rank=r, world_size=2) for r in range(2)]
    batches = [list(loader) for loader in loaders]
    assert len(loaders[0]) == len(loaders[1])
    assert [len(b) for b in batches] == [len(loaders[0])] * 2
    seen = Counter(k for rank in batches for batch in rank for k in _keys(batch))
    if drop_last:
        assert all(b.batch_size == 16 and bool(b.weights.all()) for r in batches for b in r)
        assert max(seen.values()) == 1
    else:
        assert seen == _all_keys(prepared)


def test_workers_give_the_same_batches(prepared: Path) -> None:
    base = LoaderConfig(batch_size=16, max_len=8, seed=1)
    serial = [_keys(b) for b in SampleLoader(prepared, "train", base)]
    cfg = LoaderConfig(batch_size=16, max_len=8, seed=1, num_workers=2)
    parallel = [_keys(b) for b in SampleLoader(prepared, "train", cfg)]
    assert Counter(k for b in parallel for k in b) == Counter(k for b in serial for k in b)
    assert len(parallel) == len(serial)


def test_batch_history_equals_naive_slice(prepared: Path) -> None:
    events = pq.read_table(prepared / "events.parquet").to_pandas()
    cfg = LoaderConfig(batch_size=32, max_len=5, shuffle=False)
    batch = next(iter(SampleLoader(prepared, "train", cfg)))
    b = batch.batch_size
    hist_items = batch.items.values()[b : b + int(batch.history_lengths.sum())]
    start = 0
    for i in range(b):
        user, ts = int(batch.users.values()[i]), int(batch.timestamps[i])
        past = events[(events["user"] == user) & (events["ts"] < ts)].tail(5)
        n = int(batch.history_lengths[i])
        assert n == len(past)
        assert hist_items[start : start + n].tolist() == past["item"].tolist()
        ages = batch.history_age[start : start + n].numpy()
        np.testing.assert_allclose(ages, ts - past["ts"].to_numpy())
        assert (ages > 0).all()
        start += n


def test_batch_to_and_pin_memory_round_trip(prepared: Path) -> None:
    batch = next(iter(SampleLoader(prepared, "train", LoaderConfig(batch_size=8))))
    moved = batch.to(torch.device("cpu"))
    assert torch.equal(moved.labels, batch.labels)
    assert torch.equal(moved.items.values(), batch.items.values())
    if not torch.cuda.is_available():
        pytest.skip("pin_memory needs an accelerator")
    assert batch.pin_memory().labels.is_pinned()


@settings(max_examples=80, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 12), min_size=1, max_size=8),
    max_len=st.integers(1, 15),
    picks=st.lists(st.tuples(st.integers(0, 7), st.integers(0, 12)), min_size=0, max_size=10),
)
def test_gather_matches_reference(lengths: list[int], max_len: int, picks: list) -> None:
    lengths_arr = np.asarray(lengths, dtype=np.int64)
    offsets = np.concatenate([[0, 0], np.cumsum(lengths_arr)]).astype(np.int64)
    n = int(lengths_arr.sum())
    log = EventLog(
        offsets=offsets,
        item=np.arange(n),
        category=np.zeros(n, np.int64),
        ts=np.arange(n),
        behavior=np.ones(n, np.int64),
        numeric=np.zeros((n, 0), np.float32),
        numeric_fields=(),
    )
    users = np.asarray([p[0] % len(lengths) + 1 for p in picks], dtype=np.int64)
    cutoffs = np.asarray(
        [min(c, lengths[u - 1]) for (_, c), u in zip(picks, users.tolist())], dtype=np.int64
    )
    rows, lens = gather_histories(log, users, cutoffs, max_len)
    ref_rows, ref_lens = gather_histories_reference(log, users, cutoffs, max_len)
    np.testing.assert_array_equal(rows, ref_rows)
    np.testing.assert_array_equal(lens, ref_lens)


def test_ranks_split_the_global_batches_of_one_rank(prepared: Path) -> None:
    one = SampleLoader(prepared, "train", LoaderConfig(batch_size=32, max_len=8, seed=5))
    two = [
        SampleLoader(prepared, "train", LoaderConfig(batch_size=16, max_len=8, seed=5), r, 2)
        for r in range(2)
    ]
    global_batches = [_keys(b, real_only=False) for b in one]
    per_rank = [[_keys(b, real_only=False) for b in loader] for loader in two]
    assert len(per_rank[0]) == len(per_rank[1]) == len(global_batches)
    for whole, first, second in zip(global_batches[:-1], per_rank[0], per_rank[1]):
        assert whole == first + second
