"""The repeat-count reference: vectorized counts against the per-sample loop, only the past
counted, and a fitted predictor that ranks by the count."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.data.prepared import EventLog, PreparedDataset
from pipelines.evaluate.repeat_count import (
    repeat_count_predictions,
    repeat_counts,
    repeat_counts_reference,
)


def _event_log(items_by_user: list[list[int]]) -> EventLog:
    """Users 1..U own the given item lists (user 0 owns none)."""
    lengths = [0, *map(len, items_by_user)]
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    item = np.array([i for items in items_by_user for i in items], dtype=np.int64)
    zeros = np.zeros_like(item)
    return EventLog(
        offsets=offsets, item=item, category=zeros, ts=zeros, behavior=zeros,
        numeric=np.zeros((item.size, 0), np.float32), numeric_fields=(),
    )  # fmt: skip


def test_counts_only_the_users_own_past() -> None:
    events = _event_log([[5, 5, 7], [7]])
    users = np.array([1, 1, 1, 1, 2, 2])
    items = np.array([5, 5, 7, 7, 7, 5])
    cutoffs = np.array([2, 1, 2, 3, 1, 1])
    # item 7 of user 1 is its third event: not seen with cutoff 2; user 1's 5s are not user 2's
    expected = [2, 1, 0, 1, 1, 0]
    assert repeat_counts(events, users, items, cutoffs).tolist() == expected
    assert repeat_counts_reference(events, users, items, cutoffs).tolist() == expected


@settings(max_examples=80, deadline=None)
@given(
    logs=st.lists(st.lists(st.integers(1, 6), max_size=12), min_size=1, max_size=6),
    picks=st.lists(
        st.tuples(st.integers(0, 10**6), st.integers(1, 7), st.integers(0, 10**6)), max_size=30
    ),  # fmt: skip
)
def test_vectorized_counts_match_the_loop(
    logs: list[list[int]], picks: list[tuple[int, int, int]]
) -> None:
    events = _event_log(logs)
    users = np.array([1 + u % len(logs) for u, _, _ in picks], dtype=np.int64)
    items = np.array([i for _, i, _ in picks], dtype=np.int64)
    cutoffs = np.array([c % (len(logs[u - 1]) + 1) for u, (_, _, c) in zip(users, picks)])
    fast = repeat_counts(events, users, items, cutoffs)
    assert fast.tolist() == repeat_counts_reference(events, users, items, cutoffs).tolist()


def _write_dataset(root: Path) -> Path:
    """20 users with 30 events over 10 items; samples labelled 1 exactly when the candidate is
    already in the history, so the reference must rank them perfectly."""
    items = np.random.default_rng(0).integers(1, 11, 600)
    ones = np.ones(600, np.int64)
    root.mkdir(parents=True)
    events = {"user": np.repeat(np.arange(1, 21), 30), "item": items, "category": ones,
              "ts": np.tile(np.arange(30), 20), "behavior": ones}  # fmt: skip
    pq.write_table(pa.table(events), root / "events.parquet")
    (root / "samples").mkdir()
    for seed, split in enumerate(("train", "valid", "test")):
        rng = np.random.default_rng(seed + 1)
        user, item, cutoff = (
            rng.integers(1, 21, 200),
            rng.integers(1, 11, 200),
            rng.integers(0, 31, 200),
        )
        start = (user - 1) * 30
        label = [float((items[b : b + c] == i).any()) for b, c, i in zip(start, cutoff, item)]
        samples = {"user": user, "item": item, "category": ones[:200], "ts": cutoff,
                   "label": label, "cutoff": cutoff}  # fmt: skip
        pq.write_table(pa.table(samples), root / "samples" / f"{split}.parquet")
    vocab = {"users": 21, "items": 11, "categories": 2, "behaviors": 2}
    (root / "manifest.json").write_text(
        json.dumps({"version": 1, "dataset": "toy", "vocab": vocab})
    )
    return root


def test_predictions_rank_by_the_past_count(tmp_path: Path) -> None:
    dataset = PreparedDataset.open(_write_dataset(tmp_path / "toy"))
    result = repeat_count_predictions(dataset, "test")
    assert result["metrics"]["auc"] == 1.0  # labels are "seen before": the count separates them
    seen = result["counts"] > 0
    assert result["predictions"][seen].min() > result["predictions"][~seen].max()


@settings(max_examples=60, deadline=None)
@given(
    logs=st.lists(
        st.lists(st.tuples(st.integers(1, 4), st.integers(1, 2)), max_size=12),
        min_size=1,
        max_size=5,
    ),
    picks=st.lists(
        st.tuples(st.integers(0, 10**6), st.integers(1, 5), st.integers(0, 10**6)), max_size=20
    ),  # fmt: skip
)
def test_counts_by_behavior_match_the_loop_and_add_up(
    logs: list[list[tuple[int, int]]], picks: list[tuple[int, int, int]]
) -> None:
    events = _event_log([[i for i, _ in log] for log in logs])
    events.behavior = np.array([b for log in logs for _, b in log], dtype=np.int64)
    users = np.array([1 + u % len(logs) for u, _, _ in picks], dtype=np.int64)
    items = np.array([i for _, i, _ in picks], dtype=np.int64)
    cutoffs = np.array([c % (len(logs[u - 1]) + 1) for u, (_, _, c) in zip(users, picks)])
    total = repeat_counts(events, users, items, cutoffs)
    per = []
    for behavior in (1, 2):
        fast = repeat_counts(events, users, items, cutoffs, behavior)
        slow = repeat_counts_reference(events, users, items, cutoffs, behavior)
        assert fast.tolist() == slow.tolist()
        per.append(fast)
    assert (per[0] + per[1]).tolist() == total.tolist()
