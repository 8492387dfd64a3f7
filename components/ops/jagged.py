"""Jagged <-> padded helpers for per-sample behavior sequences.

A jagged batch is ``values [N, ...]`` (all samples' rows concatenated, each sample's rows in
time order oldest -> newest) plus ``offsets [B + 1]`` int64 (exclusive prefix sum of the
lengths). Every op here has a plain ``*_reference`` twin written with Python loops; tests
compare the two on random inputs.

Example:
    >>> offsets = lengths_to_offsets(torch.tensor([2, 0, 3]))
    >>> offsets.tolist()
    [0, 2, 2, 5]
    >>> segment_ids(offsets, 5).tolist()
    [0, 0, 2, 2, 2]
    >>> padded, mask = jagged_to_padded(torch.arange(5.0), offsets, max_len=2)
    >>> padded.tolist()  # the 2 most recent rows of each sample, oldest first
    [[0.0, 1.0], [0.0, 0.0], [3.0, 4.0]]
"""

from __future__ import annotations

import torch

from components.ops.symbolic import tracing, value_max

try:  # registers torch.ops.fbgemm.* (CPU kernels with autograd)
    import fbgemm_gpu  # noqa: F401

    _HAS_FBGEMM = hasattr(torch.ops.fbgemm, "jagged_to_padded_dense")
except ImportError:  # pragma: no cover - fbgemm is a pinned dependency
    _HAS_FBGEMM = False

__all__ = [
    "gather_padded",
    "gather_padded_reference",
    "jagged_to_padded",
    "jagged_to_padded_reference",
    "last_rows",
    "last_rows_reference",
    "lengths_to_offsets",
    "lengths_to_offsets_reference",
    "padded_rows",
    "repeat_segments",
    "repeat_segments_reference",
    "segment_ids",
    "segment_ids_reference",
]

_KEEP_CHOICES = ("last", "first")


@torch.fx.wrap
def lengths_to_offsets(lengths: torch.Tensor) -> torch.Tensor:
    """``lengths [B]`` -> ``offsets [B + 1]`` int64 (exclusive prefix sum, starts at 0)."""
    lengths = lengths.to(torch.int64)
    if tracing():  # no out= into a slice (AOTInductor cannot lower its slice_scatter)
        return torch.cat([lengths.new_zeros(1), torch.cumsum(lengths, dim=0)])
    offsets = torch.zeros(lengths.numel() + 1, dtype=torch.int64, device=lengths.device)
    torch.cumsum(lengths, dim=0, out=offsets[1:])
    return offsets


def lengths_to_offsets_reference(lengths: torch.Tensor) -> torch.Tensor:
    """Loop twin of :func:`lengths_to_offsets`."""
    out = [0]
    for length in lengths.tolist():
        out.append(out[-1] + int(length))
    return torch.tensor(out, dtype=torch.int64)


@torch.fx.wrap
def segment_ids(offsets: torch.Tensor, n: int) -> torch.Tensor:
    """``offsets [B + 1]`` -> ``[N]`` int64 sample index of every jagged row (``n`` = N)."""
    lengths = offsets[1:] - offsets[:-1]
    samples = torch.arange(lengths.numel(), dtype=torch.int64, device=offsets.device)
    return torch.repeat_interleave(samples, lengths, output_size=n)


def segment_ids_reference(offsets: torch.Tensor, n: int) -> torch.Tensor:
    """Loop twin of :func:`segment_ids`."""
    bounds = offsets.tolist()
    out = [b for b in range(len(bounds) - 1) for _ in range(bounds[b], bounds[b + 1])]
    assert len(out) == n, "offsets[-1] must equal n"
    return torch.tensor(out, dtype=torch.int64)


def repeat_segments(
    offsets: torch.Tensor, times: int, n: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each sample's rows ``times`` times in a row: ``offsets [B + 1]`` ->
    ``(rows [times * N] int64 row index into the N jagged rows, lengths [B * times])``;
    ``n``: N when the caller knows it (keeps the output size symbolic under torch.export).

    Sample ``b`` becomes samples ``b * times .. b * times + times - 1`` (sample-major), each with
    all of ``b``'s rows in their order; ``values[rows]`` is the repeated jagged batch.

    Example:
        >>> rows, lengths = repeat_segments(torch.tensor([0, 2, 3]), 2)
        >>> rows.tolist(), lengths.tolist()
        ([0, 1, 0, 1, 2, 2], [2, 2, 1, 1])
    """
    if times < 1:
        raise ValueError(f"times must be >= 1, got {times}")
    lengths = offsets[1:] - offsets[:-1]
    new_lengths = lengths.repeat_interleave(times)
    if n is not None:
        total = times * n
    elif tracing():
        total = new_lengths.sum().item()
        torch._check(total >= 0)
    else:
        total = int(new_lengths.sum())
    new_offsets = lengths_to_offsets(new_lengths)
    segment = segment_ids(new_offsets, total)  # [times * N] repeated-sample index of each row
    source_start = offsets[:-1].repeat_interleave(times)  # [B * times]
    position = torch.arange(total, dtype=torch.int64, device=offsets.device) - new_offsets[segment]
    return source_start[segment] + position, new_lengths


def repeat_segments_reference(
    offsets: torch.Tensor, times: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Loop twin of :func:`repeat_segments`."""
    bounds = offsets.tolist()
    rows: list[int] = []
    lengths: list[int] = []
    for b in range(len(bounds) - 1):
        for _ in range(times):
            rows.extend(range(bounds[b], bounds[b + 1]))
            lengths.append(bounds[b + 1] - bounds[b])
    return torch.tensor(rows, dtype=torch.int64), torch.tensor(lengths, dtype=torch.int64)


@torch.fx.wrap
def last_rows(offsets: torch.Tensor, max_len: int, n: int | None = None) -> torch.Tensor:
    """``[R]`` int64 index of each sample's ``max_len`` most recent rows (all rows of shorter
    samples), ascending: the rows ``jagged_to_padded(..., max_len, keep="last")`` keeps.
    ``n``: N (``offsets[-1]``) when the caller knows it.

    Example:
        >>> last_rows(torch.tensor([0, 3, 4, 4, 6]), 2).tolist()
        [1, 2, 3, 4, 5]
    """
    if max_len < 0:
        raise ValueError(f"max_len must be >= 0, got {max_len}")
    if n is not None:
        pass
    elif tracing():
        n = offsets[-1].item()
        torch._check(n >= 0)
    else:
        n = int(offsets[-1]) if offsets.numel() else 0
    segment = segment_ids(offsets, n)
    rows = torch.arange(n, dtype=torch.int64, device=offsets.device)
    from_end = offsets[1:][segment] - 1 - rows  # 0 for each sample's newest row
    return rows[from_end < max_len]


def last_rows_reference(offsets: torch.Tensor, max_len: int) -> torch.Tensor:
    """Loop twin of :func:`last_rows`."""
    bounds = offsets.tolist()
    rows: list[int] = []
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        rows.extend(range(max(start, end - max_len), end))
    return torch.tensor(rows, dtype=torch.int64)


def _padded_width(offsets: torch.Tensor, max_len: int) -> int:
    if max_len < 0:
        raise ValueError(f"max_len must be >= 0, got {max_len}")
    lengths = offsets[1:] - offsets[:-1]
    if not tracing():
        return min(max_len, int(lengths.max()) if lengths.numel() else 0)
    # symbolic: the longest history capped at max_len, and at least 2 (extra slots are masked):
    # a width known to be != 1 lets AOTInductor lay out its transposes without a guard
    return value_max(lengths.clamp(max=max_len), upper=torch.sym_max(max_len, 2), lower=2)


def _kept_window(
    offsets: torch.Tensor, width: int, keep: str, max_len: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Row index ``[B, T]`` (clamped to a valid row) and mask ``[B, T]`` of the kept window:
    at most ``max_len`` rows per sample (while tracing the width T may exceed ``max_len``: it
    is at least 2)."""
    if keep not in _KEEP_CHOICES:
        raise ValueError(f"keep must be one of {_KEEP_CHOICES}, got {keep!r}")
    lengths = offsets[1:] - offsets[:-1]
    kept = lengths.clamp(max=max_len).clamp(max=width)
    start = offsets[:-1] + (lengths - kept if keep == "last" else 0)
    steps = torch.arange(width, dtype=torch.int64, device=offsets.device)
    mask = steps.unsqueeze(0) < kept.unsqueeze(1)
    index = torch.where(mask, start.unsqueeze(1) + steps.unsqueeze(0), 0)
    return index, mask


@torch.fx.wrap
def jagged_to_padded(
    values: torch.Tensor, offsets: torch.Tensor, max_len: int, keep: str = "last"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad jagged rows into a dense ``[B, T, ...]`` block, ``T = min(max_len, batch max)``.

    Args:
        values: ``[N, ...]`` rows, each sample's rows oldest -> newest.
        offsets: ``[B + 1]`` int64.
        max_len: cap on T.
        keep: ``"last"`` keeps the most recent T rows of longer samples, ``"first"`` the
            oldest T. Either way the kept rows are left-aligned in time order (slot 0 =
            oldest kept).

    Returns:
        ``(padded [B, T, ...], mask [B, T] bool)``; padded slots are 0. Differentiable
        w.r.t. ``values``.

    Uses ``fbgemm.jagged_to_padded_dense`` (CPU kernel with autograd) for float32 values
    when it fits (``keep="first"``, or no sample is truncated); otherwise one gather.
    Cost O(B * T * row size).
    """
    width = _padded_width(offsets, max_len)
    batch = offsets.numel() - 1
    lengths = offsets[1:] - offsets[:-1]
    row_shape = values.shape[1:]
    if tracing():  # no value-dependent branch: the gather below is the general path
        index, mask = _kept_window(offsets, width, keep, max_len)
        return gather_padded(values, index, mask), mask
    truncates = bool((lengths > width).any()) if batch else False
    if (
        _HAS_FBGEMM
        and values.dtype == torch.float32
        and width > 0
        and values.shape[0] > 0
        and (keep == "first" or not truncates)
    ):
        if keep not in _KEEP_CHOICES:
            raise ValueError(f"keep must be one of {_KEEP_CHOICES}, got {keep!r}")
        flat = values.reshape(values.shape[0], -1)
        padded = torch.ops.fbgemm.jagged_to_padded_dense(flat, [offsets], [width], 0.0)
        steps = torch.arange(width, dtype=torch.int64, device=offsets.device)
        mask = steps.unsqueeze(0) < lengths.clamp(max=width).unsqueeze(1)
        return padded.reshape(batch, width, *row_shape), mask
    index, mask = _kept_window(offsets, width, keep, max_len)
    return gather_padded(values, index, mask), mask


@torch.fx.wrap
def padded_rows(
    offsets: torch.Tensor, max_len: int, keep: str = "last"
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(index [B, T], mask [B, T])``: the rows :func:`jagged_to_padded` puts in each slot
    (``values[index]`` where ``mask``), for gathering them from elsewhere.

    Example:
        >>> index, mask = padded_rows(torch.tensor([0, 3, 4]), 2)
        >>> index.tolist(), mask.tolist()
        ([[1, 2], [3, 0]], [[True, True], [True, False]])
    """
    return _kept_window(offsets, _padded_width(offsets, max_len), keep, max_len)


def jagged_to_padded_reference(
    values: torch.Tensor, offsets: torch.Tensor, max_len: int, keep: str = "last"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Loop twin of :func:`jagged_to_padded`."""
    if keep not in _KEEP_CHOICES:
        raise ValueError(f"keep must be one of {_KEEP_CHOICES}, got {keep!r}")
    bounds = offsets.tolist()
    batch = len(bounds) - 1
    width = min(max_len, max((bounds[b + 1] - bounds[b] for b in range(batch)), default=0))
    padded = values.new_zeros((batch, width, *values.shape[1:]))
    mask = torch.zeros(batch, width, dtype=torch.bool)
    for b in range(batch):
        rows = list(range(bounds[b], bounds[b + 1]))
        rows = rows[-width:] if keep == "last" and width else rows[:width]
        for t, row in enumerate(rows):
            padded[b, t] = values[row]
            mask[b, t] = True
    return padded, mask


class _SelectRows(torch.autograd.Function):
    """``values.index_select(0, index)`` whose backward adds into the zero gradient in place.

    torch's own backward of ``index_select`` adds out of place, copying the whole ``[N, ...]``
    zero gradient once more: for K gathered rows of a long history (N = B * L) that copy, not
    the K rows, is the cost (about 65 ms of a 10k-behavior, B=64 train step per gather).
    """

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx, values: torch.Tensor, index: torch.Tensor
    ) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(index)
        ctx.values_shape = values.shape  # type: ignore[attr-defined]
        return values.index_select(0, index)

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor
    ) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        (index,) = ctx.saved_tensors  # type: ignore[attr-defined]
        out = grad.new_zeros(ctx.values_shape)  # type: ignore[attr-defined]
        return out.index_add_(0, index, grad), None


@torch.fx.wrap
def gather_padded(values: torch.Tensor, index: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Gather jagged rows into slots: ``values [N, ...]``, ``index [B, K]`` int64 row indices
    into N, ``mask [B, K]`` bool -> ``[B, K, ...]`` with masked slots 0 (their index is
    ignored). Differentiable w.r.t. ``values``.

    Example:
        >>> gather_padded(torch.tensor([5.0, 6.0]), torch.tensor([[1, 0]]),
        ...               torch.tensor([[True, False]])).tolist()
        [[6.0, 0.0]]
    """
    out_shape = (*index.shape, *values.shape[1:])
    if tracing():  # no branch on N: masked slots read an appended zero row (N = 0 included)
        padded = torch.cat([values, values.new_zeros(1, *values.shape[1:])])
        safe = torch.where(mask, index, values.shape[0]).reshape(-1)
        return padded.index_select(0, safe).reshape(out_shape)
    if values.shape[0] == 0 or index.numel() == 0:
        if bool(mask.any()):
            raise IndexError("gather_padded: mask selects rows but values has none")
        empty = values.new_zeros(out_shape)
        # Stay on the autograd graph (zero gradient) so callers can always backward.
        return empty + values.sum() * 0 if values.requires_grad else empty
    safe = torch.where(mask, index, 0).reshape(-1)
    if values.requires_grad and torch.is_grad_enabled():
        rows = _SelectRows.apply(values, safe).reshape(out_shape)
    else:
        rows = values.index_select(0, safe).reshape(out_shape)
    keep = mask.reshape(*mask.shape, *([1] * (values.dim() - 1)))
    return torch.where(keep, rows, torch.zeros((), dtype=values.dtype, device=values.device))


def gather_padded_reference(
    values: torch.Tensor, index: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Loop twin of :func:`gather_padded`."""
    out = values.new_zeros((*index.shape, *values.shape[1:]))
    for b in range(index.shape[0]):
        for k in range(index.shape[1]):
            if bool(mask[b, k]):
                out[b, k] = values[int(index[b, k])]
    return out
