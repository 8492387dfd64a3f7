"""Per-user index of behaviors by group, for scoring many candidates against one history.

``build_group_index`` sorts the N behaviors of B users once by (user, group), keeping time order
inside a group; ``lookup_group`` then answers, for Q (user, group) queries, "the K most recent
behaviors of this user in this group" and "which (user, group) segment is it" by binary search:
O(N log N) once per user batch, then O(log N + K) per candidate instead of an O(L) scan per
candidate (:func:`components.ops.retrieval.hard_search` over a repeated history). DMGIN's cached
user state scores C candidates with it.

Example:
    >>> index = build_group_index(torch.tensor([3, 1, 3, 3, 2]), torch.tensor([0, 4, 5]))
    >>> rows, mask, segment, found = lookup_group(index, torch.tensor([0, 1]),
    ...                                           torch.tensor([3, 3]), k=2)
    >>> rows.tolist(), mask.tolist(), found.tolist()
    ([[2, 3], [0, 0]], [[True, True], [False, False]], [True, False])
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from components.ops.jagged import lengths_to_offsets, segment_ids
from components.ops.symbolic import check_offsets, check_range, tracing, value_max

__all__ = ["GroupIndex", "build_group_index", "lookup_group", "lookup_group_reference"]


@dataclass
class GroupIndex:
    """Behaviors of B users sorted by (user, group).

    Attributes:
        order: ``[N]`` row ids into the jagged N rows, grouped by (user, group), time order
            (ascending row id) inside each segment.
        segment_keys: ``[S]`` sorted unique ``user * span + group`` of the S non-empty segments.
        segment_offsets: ``[S + 1]`` offsets of each segment into ``order``.
        segment_of_sorted: ``[N]`` segment of each entry of ``order``.
        span: one more than the largest group id (keys of different users never collide).
    """

    order: torch.Tensor
    segment_keys: torch.Tensor
    segment_offsets: torch.Tensor
    segment_of_sorted: torch.Tensor
    span: int


@torch.no_grad()
def build_group_index(group_ids: torch.Tensor, offsets: torch.Tensor) -> GroupIndex:
    """Sort ``group_ids [N]`` (int64, >= 0) of the users delimited by ``offsets [B + 1]``."""
    n = group_ids.numel()
    check_offsets(offsets, n)
    if tracing():
        check_range(group_ids, 0, 2**62, "group ids")  # ids >= 0
        span = value_max(group_ids, upper=2**40) + 1
    else:
        if n and int(group_ids.min()) < 0:
            raise ValueError("group ids must be >= 0")
        span = int(group_ids.max()) + 1 if n else 1
    keys = segment_ids(offsets, n) * span + group_ids
    sorted_keys, order = torch.sort(keys, stable=True)
    segment_keys, counts = torch.unique_consecutive(sorted_keys, return_counts=True)
    segment_of_sorted = torch.repeat_interleave(
        torch.arange(segment_keys.numel(), device=keys.device), counts, output_size=n
    )
    return GroupIndex(order, segment_keys, lengths_to_offsets(counts), segment_of_sorted, span)


@torch.no_grad()
def lookup_group(
    index: GroupIndex, users: torch.Tensor, groups: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ``k`` most recent behaviors of each (user, group) query.

    Args:
        index: from :func:`build_group_index`.
        users: ``[Q]`` int64 user (sample) index into the B users.
        groups: ``[Q]`` int64 group id (any value; unseen groups find nothing).
        k: K slots.

    Returns:
        ``(rows [Q, K], mask [Q, K], segment [Q], found [Q])``: row ids into N, left-aligned in
        time order (masked slots 0), as :func:`~components.ops.retrieval.hard_search` returns
        them; the segment id (valid where ``found``) for per-segment tables.
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    num_segments = index.segment_keys.numel()
    device = users.device
    keys = users * index.span + groups
    # one sentinel segment past the last (key above every real key, no rows), so that no
    # branch depends on S (S = 0 included) and every gather below stays in range
    sentinel = torch.full((1,), torch.iinfo(torch.int64).max, dtype=torch.int64, device=device)
    segment_keys = torch.cat([index.segment_keys, sentinel])
    segment = torch.searchsorted(segment_keys, keys).clamp(max=num_segments)
    found = (segment_keys[segment] == keys) & (groups >= 0) & (groups < index.span)
    segment = torch.where(found, segment, torch.zeros_like(segment))
    bounds = torch.cat([index.segment_offsets, index.segment_offsets[-1:]])
    lo = torch.where(found, bounds[segment], 0)
    hi = torch.where(found, bounds[segment + 1], 0)
    start = torch.maximum(lo, hi - k)
    slot = start.unsqueeze(1) + torch.arange(k, device=device)
    mask = slot < hi.unsqueeze(1)
    order = torch.cat([index.order, index.order.new_zeros(1)])
    rows = torch.where(mask, order[torch.where(mask, slot, 0)], 0)
    return rows, mask, segment, found


def lookup_group_reference(
    group_ids: torch.Tensor,
    offsets: torch.Tensor,
    users: torch.Tensor,
    groups: torch.Tensor,
    k: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Loop twin of :func:`build_group_index` + :func:`lookup_group`: ``(rows, mask)``."""
    bounds, ids = offsets.tolist(), group_ids.tolist()
    rows = torch.zeros(users.numel(), k, dtype=torch.int64)
    mask = torch.zeros(users.numel(), k, dtype=torch.bool)
    for q, (user, group) in enumerate(zip(users.tolist(), groups.tolist(), strict=True)):
        same = [r for r in range(bounds[user], bounds[user + 1]) if ids[r] == group]
        for slot, row in enumerate(same[-k:] if k else []):
            rows[q, slot], mask[q, slot] = row, True
    return rows, mask
