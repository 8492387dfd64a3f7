"""General search units (GSU) of two-stage lifelong models: pick K of a user's L behaviors.

SIM hard search (same key, most recent K), SIM soft search and ETA (top-K by a score /
smallest Hamming distance between SimHash signatures). Every function returns
``(index [B, K] int64, mask [B, K] bool)``: row indices into the jagged N rows, the selected
rows of each sample left-aligned in time order (oldest -> newest), masked slots 0. There is
no gradient through selection; the encoder gathers embeddings with ``index``
(:func:`components.ops.jagged.gather_padded`).

Cost: the ops stay jagged (no ``[B, T]`` padding). ``hard_search`` is O(N) plus a sort of
the matches; ``topk_by_score`` / ``hamming_topk`` do two stable sorts of N keys,
O(N log N) time and O(N) memory, plus O(N * m) for the Hamming distances.

Example:
    >>> index, mask = hard_search(torch.tensor([4, 9, 4, 4]), torch.tensor([0, 4]),
    ...                           torch.tensor([4]), k=2)
    >>> index.tolist(), mask.tolist()
    ([[2, 3]], [[True, True]])
"""

from __future__ import annotations

import torch

from components.ops.jagged import lengths_to_offsets, segment_ids
from components.ops.symbolic import bincount, check_offsets, tracing

__all__ = [
    "hamming_topk",
    "hamming_topk_reference",
    "hard_search",
    "hard_search_reference",
    "simhash_signatures",
    "topk_by_score",
    "topk_by_score_reference",
]


def _check(offsets: torch.Tensor, n: int, k: int) -> None:
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    check_offsets(offsets, n)


def _scatter_in_time_order(
    rows: torch.Tensor, batch: int, k: int, offsets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``rows`` [R] ascending row ids, at most k per sample -> ``(index [B, k], mask [B, k])``."""
    index = torch.zeros(batch, k, dtype=torch.int64, device=offsets.device)
    mask = torch.zeros(batch, k, dtype=torch.bool, device=offsets.device)
    sample = torch.searchsorted(offsets, rows, right=True) - 1
    starts = lengths_to_offsets(bincount(sample, batch))
    slot = torch.arange(rows.numel(), device=rows.device) - starts[sample]
    index[sample, slot] = rows
    mask[sample, slot] = True
    return index, mask


@torch.fx.wrap
@torch.no_grad()
def hard_search(
    history_keys: torch.Tensor, offsets: torch.Tensor, query_keys: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """SIM hard search: the most recent ``k`` behaviors whose key equals the query's key.

    Args:
        history_keys: ``[N]`` int64 (e.g. category id of each behavior).
        offsets: ``[B + 1]`` int64.
        query_keys: ``[B]`` int64 key of each candidate.
        k: K, the number of slots.

    Returns:
        ``(index [B, K], mask [B, K])`` in time order, left-aligned.
    """
    n, batch = history_keys.numel(), offsets.numel() - 1
    _check(offsets, n, k)
    if query_keys.shape != (batch,):
        raise ValueError(f"query_keys must be [B={batch}], got {tuple(query_keys.shape)}")
    sample = segment_ids(offsets, n)
    matched_rows = torch.nonzero(history_keys == query_keys[sample]).squeeze(1)  # ascending
    matched_sample = sample[matched_rows]
    matches_per_sample = bincount(matched_sample, batch)
    match_offsets = lengths_to_offsets(matches_per_sample)
    rank = torch.arange(matched_rows.numel(), device=offsets.device) - match_offsets[matched_sample]
    keep = rank >= matches_per_sample[matched_sample] - k
    return _scatter_in_time_order(matched_rows[keep], batch, k, offsets)


def hard_search_reference(
    history_keys: torch.Tensor, offsets: torch.Tensor, query_keys: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Loop twin of :func:`hard_search`."""
    bounds, keys, queries = offsets.tolist(), history_keys.tolist(), query_keys.tolist()
    index = torch.zeros(len(queries), k, dtype=torch.int64)
    mask = torch.zeros(len(queries), k, dtype=torch.bool)
    for b, query in enumerate(queries):
        rows = [row for row in range(bounds[b], bounds[b + 1]) if keys[row] == query]
        chosen = rows[-k:] if k else []
        for slot, row in enumerate(chosen):
            index[b, slot], mask[b, slot] = row, True
    return index, mask


@torch.fx.wrap
@torch.no_grad()
def topk_by_score(
    scores: torch.Tensor, offsets: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` rows of each sample by score (ties -> the more recent row wins), returned
    in time order. Used by SIM soft search (inner-product scores).

    Args:
        scores: ``[N]`` float, no NaN (``-inf`` is a valid, lowest score).
        offsets: ``[B + 1]`` int64.
        k: K.

    Returns:
        ``(index [B, K], mask [B, K])``; samples shorter than K fill their first slots.

    Example:
        >>> topk_by_score(torch.tensor([0.5, 0.1, 0.5]), torch.tensor([0, 3]), 2)[0].tolist()
        [[0, 2]]
    """
    n, batch = scores.numel(), offsets.numel() - 1
    _check(offsets, n, k)
    if scores.dim() != 1:
        raise ValueError(f"scores must be [N], got {tuple(scores.shape)}")
    if not tracing() and bool(torch.isnan(scores).any()):
        raise ValueError(f"scores has NaN at row {int(torch.nonzero(torch.isnan(scores))[0, 0])}")
    # Rows newest-first, then a stable sort by score (desc) and a stable sort by sample:
    # inside a sample rows follow (score desc, row desc), so ties go to the more recent row.
    newest_first = torch.arange(n - 1, -1, -1, device=scores.device)
    by_score = newest_first[torch.sort(scores[newest_first], descending=True, stable=True)[1]]
    sample = segment_ids(offsets, n)
    ranked = by_score[torch.sort(sample[by_score], stable=True)[1]]
    rank = torch.arange(n, device=scores.device) - offsets[sample[ranked]]
    chosen = torch.sort(ranked[rank < k])[0]
    return _scatter_in_time_order(chosen, batch, k, offsets)


def topk_by_score_reference(
    scores: torch.Tensor, offsets: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Loop twin of :func:`topk_by_score`."""
    bounds, values = offsets.tolist(), scores.tolist()
    batch = len(bounds) - 1
    index = torch.zeros(batch, k, dtype=torch.int64)
    mask = torch.zeros(batch, k, dtype=torch.bool)
    for b in range(batch):
        rows = sorted(range(bounds[b], bounds[b + 1]), key=lambda row: (-values[row], -row))
        for slot, row in enumerate(sorted(rows[:k])):
            index[b, slot], mask[b, slot] = row, True
    return index, mask


@torch.fx.wrap
@torch.no_grad()
def simhash_signatures(embeddings: torch.Tensor, planes: torch.Tensor) -> torch.Tensor:
    """ETA's locality-sensitive hash: ``[..., D] @ planes [D, m] > 0`` -> ``[..., m]`` bool.

    ``planes`` are fixed random hyperplanes (e.g. ``torch.randn(D, m)``); the Hamming
    distance between two signatures approximates the angle between the embeddings.
    """
    if embeddings.shape[-1] != planes.shape[0]:
        raise ValueError(
            f"embeddings [..., {embeddings.shape[-1]}] do not match planes {tuple(planes.shape)}"
        )
    return torch.matmul(embeddings, planes.to(embeddings.dtype)) > 0


@torch.fx.wrap
@torch.no_grad()
def hamming_topk(
    history_sig: torch.Tensor, offsets: torch.Tensor, query_sig: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """ETA retrieval: per sample, the ``k`` behaviors with the smallest Hamming distance to
    the query signature (ties -> the more recent row wins), returned in time order.

    Args:
        history_sig: ``[N, m]`` bool. offsets: ``[B + 1]``. query_sig: ``[B, m]`` bool.

    Returns:
        ``(index [B, K], mask [B, K])``. Cost O(N * m) for distances + :func:`topk_by_score`.
    """
    n, batch = history_sig.shape[0], offsets.numel() - 1
    _check(offsets, n, k)
    if query_sig.shape != (batch, history_sig.shape[1]):
        raise ValueError(
            f"query_sig must be [B={batch}, m={history_sig.shape[1]}], got {tuple(query_sig.shape)}"
        )
    sample = segment_ids(offsets, n)
    distance = (history_sig != query_sig[sample]).sum(dim=1)
    return topk_by_score(-distance.to(torch.float32), offsets, k)


def hamming_topk_reference(
    history_sig: torch.Tensor, offsets: torch.Tensor, query_sig: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Loop twin of :func:`hamming_topk`."""
    bounds, history, queries = offsets.tolist(), history_sig.tolist(), query_sig.tolist()
    batch = len(bounds) - 1
    index = torch.zeros(batch, k, dtype=torch.int64)
    mask = torch.zeros(batch, k, dtype=torch.bool)
    for b in range(batch):
        rows = range(bounds[b], bounds[b + 1])
        distance = {
            row: sum(h != q for h, q in zip(history[row], queries[b], strict=True)) for row in rows
        }
        best = sorted(rows, key=lambda row: (distance[row], -row))[:k]
        for slot, row in enumerate(sorted(best)):
            index[b, slot], mask[b, slot] = row, True
    return index, mask
