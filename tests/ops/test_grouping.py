"""Interest-group bucketing: vectorized op vs the loop reference, plus hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from components.ops import grouping as grouping_ops
from components.ops.grouping import (
    SECONDS_PER_DAY,
    GroupedBehaviors,
    group_behaviors,
    group_behaviors_reference,
    group_stats_dim,
)
from components.ops.jagged import lengths_to_offsets

EXACT_FIELDS = ("behavior_index", "behavior_mask", "group_ids", "group_mask", "group_last_position")


def _assert_same(actual: GroupedBehaviors, expected: GroupedBehaviors) -> None:
    for field in EXACT_FIELDS:
        got, want = getattr(actual, field), getattr(expected, field)
        assert got.dtype == want.dtype, field
        assert torch.equal(got, want), field
    assert actual.stats.dtype == torch.float32
    assert torch.allclose(actual.stats, expected.stats, rtol=1e-5, atol=1e-5)


def _hand_batch() -> dict[str, object]:
    """Sample 0: groups [7, 3, 7, 5, 3]; sample 1: empty; sample 2: one group [9, 9, 9]."""
    days = torch.tensor([10.0, 8.0, 5.0, 3.0, 1.0, 4.0, 2.0, 0.5])
    return {
        "group_ids": torch.tensor([7, 3, 7, 5, 3, 9, 9, 9]),
        "offsets": torch.tensor([0, 5, 5, 8]),
        "behavior_ids": torch.tensor([1, 2, 1, 1, 2, 0, 1, 1]),
        "age": days * SECONDS_PER_DAY,
        "numeric": torch.tensor([[1.0], [2.0], [3.0], [4.0], [5.0], [-1.0], [-3.0], [-2.0]]),
        "num_behaviors": 3,
    }


def test_stats_dim() -> None:
    assert group_stats_dim(3, 1) == 3 + 5 + 2
    assert group_stats_dim(1, 0) == 6


def test_hand_case_keeps_most_recent_groups_and_behaviors() -> None:
    out = group_behaviors(**_hand_batch(), max_groups=2, max_per_group=2)
    # Sample 0: last positions 7 -> 2, 5 -> 3, 3 -> 4; group 7 is dropped.
    assert out.group_ids.tolist() == [[5, 3], [0, 0], [9, 0]]
    assert out.group_mask.tolist() == [[True, True], [False, False], [True, False]]
    assert out.group_last_position.tolist() == [[3, 4], [0, 0], [2, 0]]
    assert out.behavior_index.tolist() == [
        [[3, 0], [1, 4]],
        [[0, 0], [0, 0]],
        [[6, 7], [0, 0]],  # group 9 has 3 behaviors; the 2 most recent are kept
    ]
    assert out.behavior_mask.tolist() == [
        [[True, False], [True, True]],
        [[False, False], [False, False]],
        [[True, True], [False, False]],
    ]
    # Group 3 of sample 0: rows 1 and 4, types [2, 2], ages 8 and 1 days, numeric 2 and 5.
    log = math.log
    expected_group3 = [0.0, 0.0, log(3), log(3), log(2), log(9), log(8), 2 / 5, 3.5, 5.0]
    assert torch.allclose(out.stats[0, 1], torch.tensor(expected_group3))
    # Group 9 of sample 2: statistics over all 3 behaviors, not only the 2 kept.
    expected_group9 = [log(2), log(3), 0.0, log(4), log(1.5), log(5), log(4.5), 1.0, -2.0, -1.0]
    assert torch.allclose(out.stats[2, 0], torch.tensor(expected_group9))
    assert not out.stats[1].any() and not out.stats[2, 1].any()
    _assert_same(out, group_behaviors_reference(**_hand_batch(), max_groups=2, max_per_group=2))


def test_hand_case_with_room_for_every_group_orders_oldest_first() -> None:
    out = group_behaviors(**_hand_batch(), max_groups=4, max_per_group=1)
    assert out.group_ids[0].tolist() == [7, 5, 3, 0]
    assert out.behavior_index[0, :, 0].tolist() == [2, 3, 4, 0]
    assert out.group_last_position[0].tolist() == [2, 3, 4, 0]


def test_large_group_ids_and_no_numeric_fields() -> None:
    big = 2**40
    out = group_behaviors(
        group_ids=torch.tensor([big, -big, big + 1, -big]),
        offsets=torch.tensor([0, 4]),
        behavior_ids=torch.zeros(4, dtype=torch.int64),
        age=torch.ones(4),
        numeric=torch.zeros(4, 0),
        max_groups=8,
        max_per_group=8,
        num_behaviors=1,
    )
    assert out.group_ids.tolist()[0][:3] == [big, big + 1, -big]
    assert out.stats.shape == (1, 8, group_stats_dim(1, 0))


def test_rejects_behavior_ids_out_of_range() -> None:
    batch = _hand_batch()
    batch["behavior_ids"] = torch.tensor([1, 2, 1, 3, 2, 0, 1, 1])
    with pytest.raises(ValueError, match="row 3"):
        group_behaviors(**batch, max_groups=2, max_per_group=2)


def test_rejects_offsets_that_do_not_cover_rows() -> None:
    batch = _hand_batch()
    batch["offsets"] = torch.tensor([0, 5, 7])
    with pytest.raises(ValueError, match="offsets"):
        group_behaviors(**batch, max_groups=2, max_per_group=2)


@st.composite
def grouped_inputs(draw: st.DrawFn) -> dict[str, object]:
    lengths = draw(st.lists(st.integers(0, 14), min_size=1, max_size=5))
    n = sum(lengths)
    alphabet = draw(st.sampled_from([1, 3, 40, 2**50]))
    num_behaviors = draw(st.integers(1, 4))
    num_numeric = draw(st.integers(0, 2))
    seed = draw(st.integers(0, 2**16))
    generator = torch.Generator().manual_seed(seed)
    # Large alphabets: non-negative ids take the raw int64-key path, signed ones go through
    # ``unique``; small alphabets use int32 keys.
    low = -alphabet if alphabet > 40 and draw(st.booleans()) else 0
    return {
        "group_ids": torch.randint(low, alphabet, (n,), generator=generator),
        "offsets": lengths_to_offsets(torch.tensor(lengths)),
        "behavior_ids": torch.randint(0, num_behaviors, (n,), generator=generator),
        # Integer-valued ages make ties; non-monotonic ages exercise the span clamp.
        "age": torch.randint(0, 5, (n,), generator=generator).float() * 40000.0,
        "numeric": torch.randn(n, num_numeric, generator=generator),
        "max_groups": draw(st.integers(1, 5)),
        "max_per_group": draw(st.integers(1, 5)),
        "num_behaviors": num_behaviors,
    }


@settings(max_examples=120, deadline=None)
@given(inputs=grouped_inputs())
def test_matches_reference(inputs: dict[str, object]) -> None:
    out = group_behaviors(**inputs)
    _assert_same(out, group_behaviors_reference(**inputs))


@settings(max_examples=60, deadline=None)
@given(inputs=grouped_inputs())
def test_invariants(inputs: dict[str, object]) -> None:
    """Properties that hold independently of the reference implementation."""
    out = group_behaviors(**inputs)
    offsets = inputs["offsets"].tolist()
    group_ids = inputs["group_ids"]
    for b in range(len(offsets) - 1):
        start, end = offsets[b], offsets[b + 1]
        valid = out.group_mask[b]
        kept = int(valid.sum())
        assert kept == min(len(set(group_ids[start:end].tolist())), inputs["max_groups"])
        assert valid.tolist() == [True] * kept + [False] * (len(valid) - kept)
        last_positions = out.group_last_position[b, :kept].tolist()
        assert last_positions == sorted(set(last_positions))
        for g in range(kept):
            rows = out.behavior_index[b, g][out.behavior_mask[b, g]].tolist()
            assert rows == sorted(rows) and all(start <= r < end for r in rows)
            assert all(int(group_ids[r]) == int(out.group_ids[b, g]) for r in rows)
            assert rows[-1] - start == last_positions[g]
        if end > start:
            fraction = out.stats[b, :kept, inputs["num_behaviors"] + 4]
            assert float(fraction.sum()) <= 1.0 + 1e-5


class _GroupThenPool(torch.nn.Module):
    def forward(
        self, group_ids: torch.Tensor, offsets: torch.Tensor, age: torch.Tensor
    ) -> torch.Tensor:
        out = grouping_ops.group_behaviors(
            group_ids,
            offsets,
            torch.zeros_like(group_ids),
            age,
            age.unsqueeze(1),
            max_groups=2,
            max_per_group=2,
            num_behaviors=1,
        )
        return out.stats.sum(-1) + out.behavior_mask.sum(-1)


def test_group_behaviors_is_an_fx_leaf() -> None:
    module = _GroupThenPool()
    traced = torch.fx.symbolic_trace(module)
    group_ids, offsets = torch.tensor([3, 1, 3, 2, 2]), torch.tensor([0, 3, 3, 5])
    age = torch.arange(5.0, 0.0, -1.0) * SECONDS_PER_DAY
    assert torch.equal(traced(group_ids, offsets, age), module(group_ids, offsets, age))
