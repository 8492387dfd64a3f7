"""Jagged helpers: fast ops vs their loop twins, gradients, hand-written cases."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from components.ops import jagged as jagged_ops
from components.ops.jagged import (
    gather_padded,
    gather_padded_reference,
    jagged_to_padded,
    jagged_to_padded_reference,
    last_rows,
    last_rows_reference,
    lengths_to_offsets,
    lengths_to_offsets_reference,
    repeat_segments,
    repeat_segments_reference,
    segment_ids,
    segment_ids_reference,
)

LENGTHS = st.lists(st.integers(0, 9), min_size=1, max_size=6)
ROW_SHAPES = st.sampled_from([(), (1,), (3,), (2, 2)])


def _values(n: int, row_shape: tuple[int, ...], dtype: torch.dtype, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    if dtype == torch.int64:
        return torch.randint(-50, 50, (n, *row_shape), generator=generator)
    return torch.randn(n, *row_shape, generator=generator).to(dtype)


def test_offsets_and_segment_ids_by_hand() -> None:
    offsets = lengths_to_offsets(torch.tensor([2, 0, 3]))
    assert offsets.tolist() == [0, 2, 2, 5]
    assert offsets.dtype == torch.int64
    assert segment_ids(offsets, 5).tolist() == [0, 0, 2, 2, 2]
    assert lengths_to_offsets(torch.zeros(0, dtype=torch.int64)).tolist() == [0]


@settings(max_examples=60, deadline=None)
@given(lengths=LENGTHS)
def test_offsets_and_segment_ids_match_reference(lengths: list[int]) -> None:
    lengths_t = torch.tensor(lengths)
    offsets = lengths_to_offsets(lengths_t)
    assert torch.equal(offsets, lengths_to_offsets_reference(lengths_t))
    n = sum(lengths)
    assert torch.equal(segment_ids(offsets, n), segment_ids_reference(offsets, n))


def test_jagged_to_padded_by_hand() -> None:
    offsets = torch.tensor([0, 3, 3, 4])
    values = torch.tensor([1.0, 2.0, 3.0, 4.0])
    padded, mask = jagged_to_padded(values, offsets, max_len=2)
    assert padded.tolist() == [[2.0, 3.0], [0.0, 0.0], [4.0, 0.0]]
    assert mask.tolist() == [[True, True], [False, False], [True, False]]
    padded, _ = jagged_to_padded(values, offsets, max_len=2, keep="first")
    assert padded.tolist() == [[1.0, 2.0], [0.0, 0.0], [4.0, 0.0]]
    # T is capped by the batch max, not by max_len.
    padded, mask = jagged_to_padded(values, offsets, max_len=100)
    assert padded.shape == (3, 3) and mask.sum().item() == 4


def test_jagged_to_padded_rejects_unknown_keep() -> None:
    with pytest.raises(ValueError, match="keep"):
        jagged_to_padded(torch.zeros(2), torch.tensor([0, 2]), 1, keep="middle")


@settings(max_examples=80, deadline=None)
@given(
    lengths=LENGTHS,
    row_shape=ROW_SHAPES,
    dtype=st.sampled_from([torch.float32, torch.float64, torch.int64]),
    max_len=st.integers(0, 12),
    keep=st.sampled_from(["last", "first"]),
    seed=st.integers(0, 2**16),
)
def test_jagged_to_padded_matches_reference(
    lengths: list[int],
    row_shape: tuple[int, ...],
    dtype: torch.dtype,
    max_len: int,
    keep: str,
    seed: int,
) -> None:
    offsets = lengths_to_offsets(torch.tensor(lengths))
    values = _values(sum(lengths), row_shape, dtype, seed)
    padded, mask = jagged_to_padded(values, offsets, max_len, keep)
    expected_padded, expected_mask = jagged_to_padded_reference(values, offsets, max_len, keep)
    assert padded.dtype == values.dtype
    assert torch.equal(mask, expected_mask)
    assert torch.equal(padded, expected_padded)


@settings(max_examples=40, deadline=None)
@given(
    lengths=LENGTHS,
    row_shape=ROW_SHAPES,
    max_len=st.integers(1, 12),
    keep=st.sampled_from(["last", "first"]),
    seed=st.integers(0, 2**16),
)
def test_jagged_to_padded_gradient_matches_reference(
    lengths: list[int], row_shape: tuple[int, ...], max_len: int, keep: str, seed: int
) -> None:
    """Covers both the fbgemm kernel (no truncation / keep first) and the gather fallback."""
    offsets = lengths_to_offsets(torch.tensor(lengths))
    base = _values(sum(lengths), row_shape, torch.float32, seed)
    fast_values = base.clone().requires_grad_(True)
    reference_values = base.clone().requires_grad_(True)
    padded, _ = jagged_to_padded(fast_values, offsets, max_len, keep)
    expected, _ = jagged_to_padded_reference(reference_values, offsets, max_len, keep)
    weights = torch.randn(padded.shape, generator=torch.Generator().manual_seed(seed + 1))
    (padded * weights).sum().backward()
    assert fast_values.grad is not None
    if expected.requires_grad:  # the reference is off the graph when it copies no row
        (expected * weights).sum().backward()
    expected_grad = reference_values.grad
    if expected_grad is None:
        expected_grad = torch.zeros_like(base)
    assert torch.allclose(fast_values.grad, expected_grad)


def test_gather_padded_by_hand() -> None:
    values = torch.tensor([[1.0, 1.5], [2.0, 2.5], [3.0, 3.5]], requires_grad=True)
    index = torch.tensor([[2, 0], [1, 7]])  # the masked 7 is out of range and must be ignored
    mask = torch.tensor([[True, True], [True, False]])
    out = gather_padded(values, index, mask)
    assert out.tolist() == [[[3.0, 3.5], [1.0, 1.5]], [[2.0, 2.5], [0.0, 0.0]]]
    out.sum().backward()
    assert values.grad is not None
    assert values.grad.tolist() == [[1.0, 1.0], [1.0, 1.0], [1.0, 1.0]]


def test_gather_padded_with_no_rows() -> None:
    out = gather_padded(
        torch.zeros(0, 4), torch.zeros(2, 3, dtype=torch.int64), torch.zeros(2, 3, dtype=torch.bool)
    )
    assert out.shape == (2, 3, 4) and not out.any()


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 10),
    batch=st.integers(1, 4),
    k=st.integers(0, 5),
    row_shape=ROW_SHAPES,
    seed=st.integers(0, 2**16),
)
def test_gather_padded_matches_reference(
    n: int, batch: int, k: int, row_shape: tuple[int, ...], seed: int
) -> None:
    generator = torch.Generator().manual_seed(seed)
    values = torch.randn(n, *row_shape, generator=generator, requires_grad=True)
    index = torch.randint(0, n, (batch, k), generator=generator)
    mask = torch.rand(batch, k, generator=generator) < 0.7
    out = gather_padded(values, index, mask)
    twin = values.detach().clone().requires_grad_()
    expected = gather_padded_reference(twin, index, mask)
    assert torch.equal(out, expected)
    with torch.no_grad():
        assert torch.equal(gather_padded(values, index, mask), expected)
    out.sum().backward()
    counts = torch.bincount(index[mask], minlength=n).to(torch.float32)
    assert values.grad is not None
    assert torch.equal(values.grad, counts.view(n, *([1] * len(row_shape))).expand_as(values))
    # the in-place backward against autograd through the loop twin, with uneven upstream grads
    values.grad = None
    upstream = torch.randn(out.shape, generator=generator)
    (gather_padded(values, index, mask) * upstream).sum().backward()
    if expected.requires_grad:  # the loop twin has no graph when no slot is kept
        (expected * upstream).sum().backward()
    twin_grad = twin.grad if twin.grad is not None else torch.zeros_like(values)
    torch.testing.assert_close(values.grad, twin_grad)


class _PadThenGather(torch.nn.Module):
    """Calls the ops the way an encoder does (module attribute), to check FX leaf wrapping."""

    def forward(self, values: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        padded, mask = jagged_ops.jagged_to_padded(values, offsets, 3)
        index = jagged_ops.lengths_to_offsets(mask.sum(1))[:-1].unsqueeze(1)
        return padded.sum(1) + jagged_ops.gather_padded(values, index, mask[:, :1])[:, 0]


def test_ops_are_fx_leaves() -> None:
    module = _PadThenGather()
    traced = torch.fx.symbolic_trace(module)
    values, offsets = torch.randn(6, 2), torch.tensor([0, 4, 4, 6])
    assert torch.equal(traced(values, offsets), module(values, offsets))
    called = {node.target.__name__ for node in traced.graph.nodes if node.op == "call_function"}
    assert {"jagged_to_padded", "gather_padded", "lengths_to_offsets"} <= called


@settings(max_examples=60, deadline=None)
@given(lengths=LENGTHS, times=st.integers(1, 4))
def test_repeat_segments_matches_reference(lengths: list[int], times: int) -> None:
    offsets = lengths_to_offsets(torch.tensor(lengths))
    rows, new_lengths = repeat_segments(offsets, times)
    rows_ref, lengths_ref = repeat_segments_reference(offsets, times)
    assert torch.equal(rows, rows_ref)
    assert torch.equal(new_lengths, lengths_ref)
    assert int(new_lengths.sum()) == rows.numel() == times * sum(lengths)


def test_repeat_segments_rejects_zero_times() -> None:
    with pytest.raises(ValueError, match="times must be >= 1"):
        repeat_segments(torch.tensor([0, 2]), 0)


@settings(max_examples=60, deadline=None)
@given(lengths=LENGTHS, max_len=st.integers(0, 10), seed=st.integers(0, 99))
def test_last_rows_are_the_rows_jagged_to_padded_keeps(
    lengths: list[int], max_len: int, seed: int
) -> None:
    offsets = lengths_to_offsets(torch.tensor(lengths))
    rows = last_rows(offsets, max_len)
    assert torch.equal(rows, last_rows_reference(offsets, max_len))
    values = _values(sum(lengths), (), torch.float32, seed)
    if max_len:  # the padded block holds exactly the values at those rows
        padded, mask = jagged_to_padded(values, offsets, max_len)
        assert torch.equal(padded[mask], values[rows])


def test_last_rows_rejects_negative_max_len() -> None:
    with pytest.raises(ValueError, match="max_len must be >= 0"):
        last_rows(torch.tensor([0, 2]), -1)
