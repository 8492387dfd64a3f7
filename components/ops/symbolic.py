"""Data-dependent sizes that stay symbolic under ``torch.export`` / ``torch.compile``.

The jagged ops read a few sizes from their inputs' values (the longest history, the largest
group id, ``offsets[-1]``). Eagerly those are Python ints and the ops check their inputs with
clear errors; while torch traces (``torch.export``, ``torch.compile``) they become unbacked
symbols bounded by ``torch._check`` (which the exported program keeps as runtime assertions),
and no Python branch depends on them. The helpers here are that switch, so every op states each
bound once.

Example:
    >>> lengths = torch.tensor([3, 0, 5])
    >>> value_max(lengths, upper=8)  # eagerly a Python int
    5
    >>> check_offsets(torch.tensor([0, 3, 3, 8]), 8)  # a ValueError unless it ends at N = 8
"""

from __future__ import annotations

import torch

__all__ = [
    "bincount",
    "check_offsets",
    "check_range",
    "fx_tracing",
    "tracing",
    "value_max",
    "value_min",
]


def fx_tracing() -> bool:
    """Whether FX symbolic tracing (``torch.fx`` / TorchRec's ``Tracer``) runs the calling code:
    tensors are then Proxies, whose values no Python code may read (no ``bool``, no ``int``)."""
    return torch.fx._symbolic_trace.is_fx_symbolic_tracing()


def tracing() -> bool:
    """Whether torch.export / torch.compile or FX symbolic tracing runs the calling code (sizes
    are symbolic: callers take the branch-free path)."""
    return torch.compiler.is_compiling() or torch.compiler.is_exporting() or fx_tracing()


def _check(condition: object) -> None:
    """``torch._check`` while torch.export / torch.compile trace (a runtime assertion in the
    program); nothing under FX, whose Proxies cannot be tested (the graph re-runs the op)."""
    if fx_tracing():
        return
    torch._check(condition)


def _assert_true(condition: torch.Tensor, message: str) -> None:
    """While torch.export / torch.compile trace: a runtime assertion on a 0-d bool tensor,
    kept in the program as an op (``torch._assert_async``). No unbacked symbol is made for it:
    a ``torch._check`` on an ``.item()`` that no shape uses left AOTInductor packages reading an
    uninitialised value for that symbol after deserialisation (garbage bounds, out-of-range
    indices). Nothing under FX."""
    if fx_tracing():
        return
    torch._assert_async(condition, message)


def check_offsets(offsets: torch.Tensor, n: int | torch.SymInt, name: str = "offsets") -> None:
    """``offsets`` must be ``[B + 1]`` int64 ending at ``n`` (= N rows).

    Eagerly a ``ValueError`` naming ``name``; while tracing a runtime assertion in the program
    (none under FX: its shapes are unknown while it traces).
    """
    if fx_tracing():
        return
    if offsets.dim() != 1 or offsets.shape[0] < 1:
        raise ValueError(f"{name} must be [B + 1] ending at N={n}, got {tuple(offsets.shape)}")
    if tracing():
        _assert_true(offsets[-1] == n, f"{name} must end at N")
        return
    if int(offsets[-1]) != n:
        raise ValueError(f"{name} must be [B + 1] ending at N={n}, got {tuple(offsets.shape)}")


def value_max(
    values: torch.Tensor, upper: int | torch.SymInt, lower: int = 0
) -> int | torch.SymInt:
    """``max(values)`` (``lower`` when empty) as a size: a Python int eagerly, an unbacked
    symbol bounded to ``[lower, upper]`` while tracing (the caller guarantees the bound, e.g.
    a length is at most N)."""
    if not tracing():
        return max(int(values.max()), lower) if values.numel() else lower
    floor = torch.full((1,), lower, dtype=values.dtype, device=values.device)
    top = torch.cat([values.reshape(-1), floor]).max().item()
    _check(top >= lower)
    _check(top <= upper)
    return top


def value_min(values: torch.Tensor, lower: int = 0) -> int | torch.SymInt:
    """``min(values)`` of a non-empty tensor, checked to be at least ``lower`` (eagerly a
    ``ValueError``; while tracing a runtime assertion)."""
    if not tracing():
        low = int(values.min())
        if low < lower:
            raise ValueError(f"values must be >= {lower}, got {low}")
        return low
    low = values.min().item()
    _check(low >= lower)
    return low


def check_range(values: torch.Tensor, low: int, high: int, name: str) -> None:
    """Every entry of ``values`` in ``[low, high)``: eagerly a ``ValueError`` naming ``name`` and
    the first bad row; while tracing a runtime assertion."""
    if tracing():
        pad = torch.full((1,), low, dtype=values.dtype, device=values.device)
        padded = torch.cat([values.reshape(-1), pad])
        inside = (padded.min() >= low) & (padded.max() < high)
        _assert_true(inside, f"{name} must be in [{low}, {high})")
        return
    if values.numel() and (int(values.min()) < low or int(values.max()) >= high):
        bad = torch.nonzero((values < low) | (values >= high))[0, 0]
        raise ValueError(
            f"{name} must be in [{low}, {high}); row {int(bad)} has {int(values[bad])}"
        )


def bincount(ids: torch.Tensor, size: int | torch.SymInt) -> torch.Tensor:
    """``[size]`` int64 count of each id in ``[0, size)``: ``torch.bincount(ids, minlength=size)``
    for ids below ``size``, with a static output size (bincount's depends on the values)."""
    counts = torch.zeros(size, dtype=torch.int64, device=ids.device)
    return counts.index_add_(0, ids, torch.ones_like(ids, dtype=torch.int64))
