"""build_group_index + lookup_group vs the loop twin and vs hard_search."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from components.ops.group_index import build_group_index, lookup_group, lookup_group_reference
from components.ops.jagged import lengths_to_offsets
from components.ops.retrieval import hard_search


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 15), min_size=1, max_size=5),
    num_groups=st.integers(1, 5),
    k=st.integers(0, 6),
    seed=st.integers(0, 10_000),
)
def test_lookup_matches_reference(lengths: list[int], num_groups: int, k: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    offsets = lengths_to_offsets(torch.tensor(lengths))
    group_ids = torch.randint(0, num_groups, (sum(lengths),), generator=g)
    q = 12
    users = torch.randint(0, len(lengths), (q,), generator=g)
    groups = torch.randint(-1, num_groups + 2, (q,), generator=g)  # unseen and out of range too
    rows, mask, segment, found = lookup_group(
        build_group_index(group_ids, offsets), users, groups, k
    )
    expected_rows, expected_mask = lookup_group_reference(group_ids, offsets, users, groups, k)
    assert torch.equal(mask, expected_mask)
    assert torch.equal(rows, expected_rows)
    index = build_group_index(group_ids, offsets)
    counts = torch.tensor(
        [
            int((group_ids[offsets[u] : offsets[u + 1]] == grp).sum())
            for u, grp in zip(users.tolist(), groups.tolist(), strict=True)
        ]
    )
    if index.segment_keys.numel() == 0:  # no behaviors at all
        assert not found.any() and not counts.any()
        return
    sizes = index.segment_offsets[segment + 1] - index.segment_offsets[segment]
    assert torch.equal(torch.where(found, sizes, 0), counts)


def test_equals_hard_search_on_a_repeated_history() -> None:
    """C candidates per user looked up in the index = hard search over C copies of the user."""
    g = torch.Generator().manual_seed(0)
    lengths, c, k = torch.tensor([30, 0, 7]), 4, 5
    offsets = lengths_to_offsets(lengths)
    group_ids = torch.randint(0, 6, (int(lengths.sum()),), generator=g)
    users = torch.arange(3).repeat_interleave(c)
    groups = torch.randint(0, 6, (3 * c,), generator=g)
    rows, mask, _, _ = lookup_group(build_group_index(group_ids, offsets), users, groups, k)
    rep_lengths = lengths.repeat_interleave(c)
    rep_rows = torch.cat(
        [torch.arange(int(offsets[u]), int(offsets[u + 1])) for u in users.tolist()]
    )
    index, expected_mask = hard_search(
        group_ids[rep_rows], lengths_to_offsets(rep_lengths), groups, k
    )
    assert torch.equal(mask, expected_mask)
    assert torch.equal(rows[mask], rep_rows[index][expected_mask])


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        build_group_index(torch.tensor([1, -2]), torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="offsets"):
        build_group_index(torch.tensor([1, 2]), torch.tensor([0, 3]))
    empty = build_group_index(torch.zeros(0, dtype=torch.int64), torch.tensor([0, 0]))
    rows, mask, _, found = lookup_group(empty, torch.tensor([0, 1]), torch.tensor([0, 3]), 3)
    assert rows.shape == (2, 3) and not mask.any() and not found.any()
