"""User-sharded datasets: the shards partition the users, their events and samples; a rank with
``loader.user_shards`` holds only its share of the events, builds the same histories as the
whole log, and 2 real ranks (torchrun, gloo) see every sample exactly once in equal numbers of
batches."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from pipelines.data.loader import LoaderConfig, SampleLoader, build_batch
from pipelines.data.prepared import DataError, PreparedDataset
from pipelines.data.shards import main as shards_main
from pipelines.data.shards import shard_of, shards_of_rank, write_shards
from pipelines.train.distributed import free_port

from .test_loader import _all_keys, _keys, write_random_prepared

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARDS = 4


@pytest.fixture(scope="module")
def sharded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = write_random_prepared(tmp_path_factory.mktemp("sharded"), users=40, row_group=23)
    write_shards(root, SHARDS)
    return root


def _rows(path: Path) -> Counter:
    table = pq.read_table(path)
    return Counter(zip(*(table.column(c).to_pylist() for c in table.column_names), strict=True))


def test_shards_partition_users_events_and_samples(sharded: Path) -> None:
    dataset = PreparedDataset.open(sharded)
    entry = dataset.manifest["shards"]
    assert entry["count"] == SHARDS == dataset.shard_count
    events, samples = Counter(), Counter()
    owner: dict[int, int] = {}
    for k in range(SHARDS):
        table = pq.read_table(dataset.shard_path(k, "events.parquet"))
        users = table.column("user").to_numpy()
        assert np.all(np.diff(users) >= 0), "a shard's events stay sorted by user"
        assert np.all(shard_of(users, SHARDS) == k)
        for u in set(users.tolist()):
            assert owner.setdefault(u, k) == k
        assert (
            table.num_rows == entry["events"][k] and len(set(users.tolist())) == entry["users"][k]
        )
        events += _rows(dataset.shard_path(k, "events.parquet"))
        path = dataset.shard_path(k, "samples/train.parquet")
        assert pq.read_table(path).num_rows == entry["samples"]["train"][k]
        samples += _rows(path)
    assert events == _rows(sharded / "events.parquet")
    assert samples == _rows(sharded / "samples" / "train.parquet")
    assert min(entry["users"]) > 0  # 40 users over 4 shards: the hash spreads them


def test_shard_hash_is_fixed_and_spreads_neighbours() -> None:
    users = np.arange(1, 100_001)
    counts = np.bincount(shard_of(users, 8), minlength=8)
    assert counts.min() > 0.97 * 100_000 / 8  # within 3% of even
    assert shard_of(np.array([1, 2, 3]), 8).tolist() == shard_of(np.array([1, 2, 3]), 8).tolist()
    assert shards_of_rank(5, 1, 2) == [1, 3]
    with pytest.raises(ValueError, match="cannot feed 4 ranks"):
        shards_of_rank(2, 0, 4)


def test_a_rank_holds_only_its_share_and_builds_the_same_histories(sharded: Path) -> None:
    dataset = PreparedDataset.open(sharded)
    full = dataset.read_events()
    config = LoaderConfig(batch_size=16, max_len=7, shuffle=True, seed=3, user_shards=True)
    seen = Counter()
    counts = []
    for rank in range(2):
        loader = SampleLoader(sharded, "train", config, rank=rank, world_size=2)
        mine = shards_of_rank(SHARDS, rank, 2)
        assert loader.events.item.shape[0] == sum(
            dataset.manifest["shards"]["events"][k] for k in mine
        )
        assert loader.events.item.shape[0] < full.item.shape[0]
        batches = list(loader)
        counts.append(len(batches))
        for batch in batches:
            keys = _keys(batch)
            seen.update(keys)
            for u, _, _ in keys:
                assert shard_of(np.array([u]), SHARDS)[0] in mine
            _assert_whole_log_histories(full, batch, 7)
    assert counts[0] == counts[1] == len(SampleLoader(sharded, "train", config, 0, 2))
    assert seen == _all_keys(sharded)


def _assert_whole_log_histories(full, batch, max_len: int) -> None:  # noqa: ANN001
    """The same samples built from the whole log give the same histories."""
    n = batch.batch_size
    samples = {
        "user": batch.users.values().numpy(),
        "item": batch.items.values()[:n].numpy(),
        "category": batch.item_ids[1, :n].numpy(),
        "ts": batch.timestamps.numpy(),
        "label": batch.labels.numpy(),
        "cutoff": _cutoffs(full, batch),
    }
    again = build_batch(full, samples, max_len, batch.weights.numpy())
    assert batch.history_lengths.tolist() == again.history_lengths.tolist()
    assert torch.equal(batch.item_ids, again.item_ids)  # items, categories, behaviors
    assert torch.equal(batch.history_numeric, again.history_numeric)
    assert batch.history_age.tolist() == again.history_age.tolist()


@pytest.mark.parametrize("drop_last", [False, True])
def test_shard_at_a_time_holds_one_shard_and_sees_every_sample_once(
    sharded: Path, drop_last: bool
) -> None:
    dataset = PreparedDataset.open(sharded)
    full, entry = dataset.read_events(), dataset.manifest["shards"]
    config = LoaderConfig(
        batch_size=16, max_len=7, seed=5, drop_last=drop_last, user_shards=True,
        shard_at_a_time=True,
    )  # fmt: skip
    cut = (lambda n: n // 16) if drop_last else (lambda n: -(-n // 16))
    per_rank = [
        sum(cut(entry["samples"]["train"][k]) for k in shards_of_rank(SHARDS, r, 2))
        for r in range(2)
    ]
    seen, counts = Counter(), []
    for rank in range(2):
        loader = SampleLoader(sharded, "train", config, rank=rank, world_size=2)
        held = {entry["events"][k] for k in shards_of_rank(SHARDS, rank, 2)}
        counts.append(0)
        for batch in loader:
            counts[-1] += 1
            keys = _keys(batch)
            if keys:  # a real batch: one shard's users, and only that shard's events held
                assert len(set(shard_of(np.array([u for u, _, _ in keys]), SHARDS))) == 1
                assert loader._events is not None and loader._events.item.shape[0] in held
            if drop_last:
                assert float(batch.weights.min()) == 1.0
            seen.update(keys)
            _assert_whole_log_histories(full, batch, 7)
    want = min(per_rank) if drop_last else max(per_rank)
    assert counts == [want, want] == [len(SampleLoader(sharded, "train", config, 0, 2))] * 2
    if not drop_last:
        assert seen == _all_keys(sharded)  # every sample exactly once
    else:
        assert sum(seen.values()) == 16 * want * 2 and max(seen.values()) == 1
    with pytest.raises(ValueError, match="needs user_shards"):
        LoaderConfig(shard_at_a_time=True)


def _cutoffs(events, batch) -> np.ndarray:  # noqa: ANN001
    """Each sample's cutoff recomputed from the whole log (events strictly before its ts)."""
    out = []
    for u, t in zip(batch.users.values().tolist(), batch.timestamps.tolist(), strict=True):
        ts = events.ts[events.offsets[u] : events.offsets[u + 1]]
        out.append(int(np.searchsorted(ts, t, side="left")))
    return np.asarray(out, dtype=np.int64)


def test_drop_last_keeps_the_fewest_full_batches_of_any_rank(sharded: Path) -> None:
    config = LoaderConfig(batch_size=16, max_len=5, drop_last=True, user_shards=True)
    per_shard = PreparedDataset.open(sharded).manifest["shards"]["samples"]["train"]
    rows = [sum(per_shard[k] for k in shards_of_rank(SHARDS, r, 2)) for r in range(2)]
    for rank in range(2):
        batches = list(SampleLoader(sharded, "train", config, rank=rank, world_size=2))
        assert len(batches) == min(r // 16 for r in rows)
        assert all(float(b.weights.min()) == 1.0 for b in batches)


def test_user_shards_without_shards_fail_clearly(tmp_path: Path) -> None:
    root = write_random_prepared(tmp_path / "plain", users=5)
    with pytest.raises(DataError, match="python -m pipelines.data.shards"):
        SampleLoader(root, "train", LoaderConfig(user_shards=True))
    assert shards_main([str(tmp_path / "nothing"), "--shards", "2"]) == 2
    assert not (tmp_path / "nothing").exists()


def test_rewriting_shards_replaces_them(tmp_path: Path) -> None:
    root = write_random_prepared(tmp_path / "again", users=12)
    write_shards(root, 3)
    write_shards(root, 2)
    assert sorted(p.name for p in (root / "shards").iterdir()) == ["0000", "0001"]
    assert json.loads((root / "manifest.json").read_text())["shards"]["count"] == 2
    assert not [p for p in root.iterdir() if p.name.startswith(".")]  # no temp dirs left


RANK_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import torch
    import torch.distributed as dist
    from pipelines.data.loader import LoaderConfig, SampleLoader

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    config = LoaderConfig(batch_size=8, max_len=6, seed=1, user_shards=True)
    loader = SampleLoader(sys.argv[1], "train", config, rank=rank, world_size=world)
    keys, batches = [], 0
    for batch in loader:
        total = torch.tensor([float(batch.weights.sum())])
        dist.all_reduce(total)  # one collective per batch: unequal counts would hang
        batches += 1
        n = batch.batch_size
        for u, i, t, w in zip(batch.users.values().tolist(), batch.items.values()[:n].tolist(),
                              batch.timestamps.tolist(), batch.weights.tolist()):
            if w > 0:
                keys.append([u, i, t])
    gathered = [None] * world
    dist.all_gather_object(gathered, {"keys": keys, "batches": batches,
                                      "events": int(loader.events.item.shape[0])})
    if rank == 0:
        with open(sys.argv[2], "w") as f:
            json.dump(gathered, f)
    dist.destroy_process_group()
    """
)


def test_two_ranks_see_every_sample_exactly_once(sharded: Path, tmp_path: Path) -> None:
    script = tmp_path / "ranks.py"
    script.write_text(RANK_SCRIPT)
    out = tmp_path / "ranks.json"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2",
         f"--master-port={free_port()}", str(script), str(sharded), str(out)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = json.loads(out.read_text())
    assert ranks[0]["batches"] == ranks[1]["batches"]
    seen = Counter(tuple(k) for r in ranks for k in r["keys"])
    assert seen == _all_keys(sharded)
    total_events = pq.read_table(sharded / "events.parquet").num_rows
    assert ranks[0]["events"] + ranks[1]["events"] == total_events
