"""Bucket each user's lifelong history by interest group (DMGIN's grouping step).

Per sample: bucket its behaviors by group id; a group's recency is the position of its most
recent behavior; keep the G most recently active groups, ordered oldest -> newest by that
last position (the freshest group is the last valid slot); inside each kept group keep its M
most recent behaviors, in time order. Per-group statistics use ALL of the group's behaviors
in the (already truncated) history, not only the M kept.

Shapes: B batch, N jagged rows, G groups kept, M behaviors kept per group, F numeric fields.

Example:
    >>> out = group_behaviors(
    ...     group_ids=torch.tensor([7, 3, 7, 5]), offsets=torch.tensor([0, 4]),
    ...     behavior_ids=torch.tensor([1, 1, 2, 1]), age=torch.full((4,), 86400.0),
    ...     numeric=torch.zeros(4, 0), max_groups=2, max_per_group=1, num_behaviors=3)
    >>> out.group_ids.tolist()  # group 3 (last seen at position 1) is dropped
    [[7, 5]]
    >>> out.behavior_index.tolist()
    [[[2], [3]]]
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from components.ops.jagged import lengths_to_offsets, segment_ids
from components.ops.symbolic import bincount, check_offsets, check_range, tracing, value_max

__all__ = [
    "SECONDS_PER_DAY",
    "GroupedBehaviors",
    "group_behaviors",
    "group_behaviors_reference",
    "group_stats_dim",
]

SECONDS_PER_DAY = 86400.0


@dataclass
class GroupedBehaviors:
    """The grouped view of a jagged history batch.

    Attributes:
        behavior_index: ``[B, G, M]`` int64 row index into the jagged N rows (0 where masked).
        behavior_mask: ``[B, G, M]`` bool; within a group, kept behaviors are left-aligned,
            oldest -> newest.
        group_ids: ``[B, G]`` int64 (0 where masked).
        group_mask: ``[B, G]`` bool; kept groups left-aligned, ordered oldest -> newest by
            their last behavior.
        group_last_position: ``[B, G]`` int64 position (0-based within the user's sequence)
            of the group's most recent behavior (0 where masked).
        stats: ``[B, G, S]`` float32, ``S = group_stats_dim(num_behaviors, num_numeric)``;
            layout documented in :func:`group_stats_dim`; 0 for masked groups.
    """

    behavior_index: torch.Tensor
    behavior_mask: torch.Tensor
    group_ids: torch.Tensor
    group_mask: torch.Tensor
    group_last_position: torch.Tensor
    stats: torch.Tensor


def group_stats_dim(num_behaviors: int, num_numeric: int) -> int:
    """Length S of the per-group statistics vector, in this order (nb = num_behaviors,
    F = num_numeric, ages in days = seconds / 86400, clamped at 0 before log1p):

    - ``[0, nb)``: log1p(count of behaviors of type t) for t = 0 .. nb-1
    - ``nb``: log1p(total count)
    - ``nb + 1``: log1p(age of the group's most recent behavior, days)
    - ``nb + 2``: log1p(age of the group's oldest behavior, days)
    - ``nb + 3``: log1p(span days = max(oldest age - most recent age, 0))
    - ``nb + 4``: fraction of the user's (truncated) history in this group
    - ``[nb + 5, nb + 5 + F)``: mean of each numeric field
    - ``[nb + 5 + F, nb + 5 + 2F)``: max of each numeric field

    "Most recent"/"oldest" are by position (time order), not by the smallest/largest age.
    """
    return num_behaviors + 5 + 2 * num_numeric


def _check_inputs(
    group_ids: torch.Tensor,
    offsets: torch.Tensor,
    behavior_ids: torch.Tensor,
    age: torch.Tensor,
    numeric: torch.Tensor,
    max_groups: int,
    max_per_group: int,
    num_behaviors: int,
) -> None:
    n = group_ids.numel()
    if max_groups < 1 or max_per_group < 1 or num_behaviors < 1:
        raise ValueError(
            "max_groups, max_per_group and num_behaviors must be >= 1, got "
            f"{max_groups}, {max_per_group}, {num_behaviors}"
        )
    check_offsets(offsets, n)
    for name, tensor in (("behavior_ids", behavior_ids), ("age", age)):
        if tensor.shape != (n,):
            raise ValueError(f"{name} must be [N={n}], got {tuple(tensor.shape)}")
    if numeric.dim() != 2 or numeric.shape[0] != n:
        raise ValueError(f"numeric must be [N={n}, F], got {tuple(numeric.shape)}")
    check_range(behavior_ids, 0, num_behaviors, "behavior_ids")


def _empty_output(
    batch: int, max_groups: int, max_per_group: int, stats_dim: int, device: torch.device
) -> GroupedBehaviors:
    shape = (batch, max_groups)
    return GroupedBehaviors(
        behavior_index=torch.zeros(*shape, max_per_group, dtype=torch.int64, device=device),
        behavior_mask=torch.zeros(*shape, max_per_group, dtype=torch.bool, device=device),
        group_ids=torch.zeros(shape, dtype=torch.int64, device=device),
        group_mask=torch.zeros(shape, dtype=torch.bool, device=device),
        group_last_position=torch.zeros(shape, dtype=torch.int64, device=device),
        stats=torch.zeros(*shape, stats_dim, dtype=torch.float32, device=device),
    )


def _log1p_days(seconds: torch.Tensor) -> torch.Tensor:
    return torch.log1p((seconds.to(torch.float32) / SECONDS_PER_DAY).clamp(min=0.0))


def _compact_group_codes(group_ids: torch.Tensor, batch: int) -> tuple[torch.Tensor, int]:
    """Group codes in ``[0, num_codes)`` such that ``batch * num_codes`` fits in int64.

    Non-negative ids with a small range are used as they are (one min/max pass); otherwise
    they are compressed with ``torch.unique`` (one extra sort). While torch traces, the ids
    must be non-negative (a runtime assertion) and the code count is a bounded symbol.
    """
    if tracing():
        check_range(group_ids, 0, 2**62, "group ids")  # >= 0
        return group_ids, value_max(group_ids, upper=2**40) + 1
    low, high = int(group_ids.min()), int(group_ids.max())
    if low >= 0 and (high + 1) * max(batch, 1) < 2**62:
        return group_ids, high + 1
    unique_groups, codes = torch.unique(group_ids, return_inverse=True)
    return codes, unique_groups.numel()


@torch.fx.wrap
@torch.no_grad()
def group_behaviors(
    group_ids: torch.Tensor,
    offsets: torch.Tensor,
    behavior_ids: torch.Tensor,
    age: torch.Tensor,
    numeric: torch.Tensor,
    max_groups: int,
    max_per_group: int,
    num_behaviors: int,
    skip_group: int | None = None,
) -> GroupedBehaviors:
    """Group a jagged history batch (vectorized, no Python loop over samples or groups).

    Args:
        group_ids: ``[N]`` int64 interest group of each behavior (any int64 values).
        offsets: ``[B + 1]`` int64; each sample's rows oldest -> newest.
        behavior_ids: ``[N]`` int64 in ``[0, num_behaviors)``.
        age: ``[N]`` float32 seconds before the query.
        numeric: ``[N, F]`` float32.
        max_groups: G. max_per_group: M. num_behaviors: behavior-type vocabulary size.
        skip_group: a group id that is no group (DMGIN passes 0, "unknown"): its behaviors
            take no group slot and no statistics (they still count in the history's length).

    Returns:
        :class:`GroupedBehaviors`. No gradient flows (inputs are ids and raw features).

    Cost O(N log N): one stable sort of N on the (sample, group) key (plus a ``unique`` sort
    only for negative or huge group ids), one sort of the S <= N groups by last row, then
    O(N) segment reductions and scatters into [B, G, M]. About 0.1-0.2 s for B=256, L=10k on
    this 2-core CPU (``benchmarks/grouping.py``).
    """
    _check_inputs(
        group_ids, offsets, behavior_ids, age, numeric, max_groups, max_per_group, num_behaviors
    )
    device = group_ids.device
    n, batch, num_numeric = group_ids.numel(), offsets.numel() - 1, numeric.shape[1]
    stats_dim = group_stats_dim(num_behaviors, num_numeric)
    out = _empty_output(batch, max_groups, max_per_group, stats_dim, device)
    if n == 0 and not tracing():  # traced, the general path below handles N = 0
        return out
    lengths = offsets[1:] - offsets[:-1]
    sample = segment_ids(offsets, n)

    # 1. Sort rows by (sample, group, position): rows already follow (sample, position), so a
    #    stable sort on a (sample, group code) key keeps time order inside each group. Each
    #    run of equal keys is one group segment.
    group_code, num_codes = _compact_group_codes(group_ids, batch)
    key = sample * num_codes + group_code
    if (
        not tracing() and batch * num_codes < 2**31
    ):  # the radix sort is about twice as fast on int32 keys
        key = key.to(torch.int32)
    sorted_key, order = torch.sort(key, stable=True)
    if tracing():
        # no slice assignment (AOTInductor cannot lower its slice_scatter) and no ``[:-1]`` of
        # an N-row tensor: size-oblivious tracing sizes it N - 1 without clamping, -1 when N = 0
        # (keys are >= 0, so the -1 sentinel differs from every first key)
        previous = torch.cat([sorted_key.new_full((1,), -1), sorted_key])[:n]
        is_first = sorted_key != previous
    else:
        is_first = torch.ones(n, dtype=torch.bool, device=device)
        is_first[1:] = sorted_key[1:] != sorted_key[:-1]
    segment_start = torch.nonzero(is_first).squeeze(1)  # [S] sorted-order start of each group
    segment_end = torch.cat([segment_start[1:], torch.full_like(segment_start[:1], n)])
    segment_count = segment_end - segment_start
    last_row = order[segment_end - 1]
    segment_sample = torch.div(
        sorted_key[segment_start].to(torch.int64), num_codes, rounding_mode="floor"
    )
    num_segments = segment_start.numel()

    # 2. Rank groups inside each sample by last row (unique; ordered by (sample, position)).
    by_recency = torch.argsort(last_row)
    if skip_group is not None:  # segments of the skipped id are never ranked, never kept
        counted = group_ids[last_row] != skip_group
        by_recency = by_recency[counted[by_recency]]
        groups_per_sample = bincount(segment_sample[counted], batch)
    else:
        groups_per_sample = bincount(segment_sample, batch)
    group_offsets = lengths_to_offsets(groups_per_sample)
    ranked_sample = segment_sample[by_recency]
    rank = torch.arange(by_recency.numel(), device=device) - group_offsets[ranked_sample]
    dropped = (groups_per_sample[ranked_sample] - max_groups).clamp(min=0)
    group_slot = torch.full((num_segments,), -1, dtype=rank.dtype, device=device)
    group_slot[by_recency] = rank - dropped  # < 0: group not kept

    kept = torch.nonzero(group_slot >= 0).squeeze(1)  # [K] kept segments, ascending
    if not tracing() and kept.numel() == 0:  # every behavior in the skipped group
        return out
    kept_sample = segment_sample[kept]
    group_flat = kept_sample * max_groups + group_slot[kept]  # [K] slot in [B * G]
    kept_last = last_row[kept]
    out.group_ids.view(-1)[group_flat] = group_ids[kept_last]
    out.group_mask.view(-1)[group_flat] = True
    out.group_last_position.view(-1)[group_flat] = kept_last - offsets[kept_sample]

    # 3. Only rows of kept groups matter from here on (R <= N): in sorted order they are the
    #    contiguous runs [segment_start, segment_end) of the kept segments.
    kept_count = segment_count[kept]
    row_group = torch.repeat_interleave(
        torch.arange(kept.numel(), device=device), kept_count
    )  # [R] kept-group code of each row
    within = (
        torch.arange(row_group.numel(), device=device) - lengths_to_offsets(kept_count)[row_group]
    )
    rows = order[segment_start[kept][row_group] + within]  # [R] jagged row index, time order
    behavior_slot = within - (kept_count[row_group] - max_per_group).clamp(min=0)
    in_window = behavior_slot >= 0
    flat = (group_flat[row_group] * max_per_group + behavior_slot)[in_window]
    out.behavior_index.view(-1)[flat] = rows[in_window]
    out.behavior_mask.view(-1)[flat] = True

    # 4. Statistics over all behaviors of each kept group.
    num_kept = kept.numel()
    type_counts = torch.zeros(num_kept * num_behaviors, dtype=torch.float32, device=device)
    type_counts.index_add_(
        0,
        row_group * num_behaviors + behavior_ids[rows],
        torch.ones(rows.numel(), dtype=torch.float32, device=device),
    )
    count = kept_count.to(torch.float32)
    newest_age = age[kept_last].float()
    oldest_age = age[order[segment_start[kept]]].float()
    if num_numeric:
        numeric_rows = numeric[rows].to(torch.float32)
        if tracing():  # segment_reduce fails on no rows: scatters handle R = 0
            shape = (num_kept, num_numeric)
            numeric_sum = numeric_rows.new_zeros(shape).index_add_(0, row_group, numeric_rows)
            numeric_max = numeric_rows.new_full(shape, float("-inf")).scatter_reduce_(
                0, row_group.unsqueeze(1).expand(-1, num_numeric), numeric_rows, "amax"
            )
        else:
            numeric_sum = torch.segment_reduce(numeric_rows, "sum", lengths=kept_count, axis=0)
            numeric_max = torch.segment_reduce(numeric_rows, "max", lengths=kept_count, axis=0)
    else:
        numeric_sum = numeric_max = torch.zeros(num_kept, 0, device=device)
    out.stats.view(-1, stats_dim)[group_flat] = torch.cat(
        [
            torch.log1p(type_counts.view(num_kept, num_behaviors)),
            torch.log1p(count).unsqueeze(1),
            _log1p_days(newest_age).unsqueeze(1),
            _log1p_days(oldest_age).unsqueeze(1),
            _log1p_days(oldest_age - newest_age).unsqueeze(1),
            (count / lengths[kept_sample].to(torch.float32)).unsqueeze(1),
            numeric_sum / count.unsqueeze(1),
            numeric_max,
        ],
        dim=1,
    )
    return out


@torch.no_grad()
def group_behaviors_reference(
    group_ids: torch.Tensor,
    offsets: torch.Tensor,
    behavior_ids: torch.Tensor,
    age: torch.Tensor,
    numeric: torch.Tensor,
    max_groups: int,
    max_per_group: int,
    num_behaviors: int,
    skip_group: int | None = None,
) -> GroupedBehaviors:
    """Plain-loop twin of :func:`group_behaviors` (same arguments, same result)."""
    _check_inputs(
        group_ids, offsets, behavior_ids, age, numeric, max_groups, max_per_group, num_behaviors
    )
    batch, num_numeric = offsets.numel() - 1, numeric.shape[1]
    out = _empty_output(
        batch,
        max_groups,
        max_per_group,
        group_stats_dim(num_behaviors, num_numeric),
        torch.device("cpu"),
    )
    bounds, groups_of = offsets.tolist(), group_ids.tolist()
    behaviors, ages, fields = behavior_ids.tolist(), age.tolist(), numeric.tolist()

    def log1p_days(seconds: float) -> float:
        return math.log1p(max(seconds / SECONDS_PER_DAY, 0.0))

    for b in range(batch):
        start, end = bounds[b], bounds[b + 1]
        rows_of_group: dict[int, list[int]] = {}
        for row in range(start, end):
            if groups_of[row] != skip_group:
                rows_of_group.setdefault(groups_of[row], []).append(row)
        by_recency = sorted(rows_of_group.items(), key=lambda item: item[1][-1])
        for g, (group, rows) in enumerate(by_recency[-max_groups:]):
            for m, row in enumerate(rows[-max_per_group:]):
                out.behavior_index[b, g, m] = row
                out.behavior_mask[b, g, m] = True
            out.group_ids[b, g] = group
            out.group_mask[b, g] = True
            out.group_last_position[b, g] = rows[-1] - start
            per_type = [0] * num_behaviors
            for row in rows:
                per_type[behaviors[row]] += 1
            newest, oldest = ages[rows[-1]], ages[rows[0]]
            means = [sum(fields[row][f] for row in rows) / len(rows) for f in range(num_numeric)]
            maxes = [max(fields[row][f] for row in rows) for f in range(num_numeric)]
            values = (
                [math.log1p(c) for c in per_type]
                + [math.log1p(len(rows)), log1p_days(newest), log1p_days(oldest)]
                + [log1p_days(oldest - newest), len(rows) / (end - start)]
                + means
                + maxes
            )
            out.stats[b, g] = torch.tensor(values, dtype=torch.float32)
    return out
