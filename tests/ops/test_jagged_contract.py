"""Jagged helpers: the contract callers rely on beyond value equality with the loop twins.

- dtypes: every index/length output (fast op and loop twin alike) is int64, masks are bool,
  also for empty batches (B = 0), empty histories (N = 0) and ``max_len = 0``;
- devices: outputs stay on the offsets' device (checked on ``meta``, which reads no values);
- errors name the offending argument and its value;
- the traced path (``torch.export``, size-oblivious as the dense ranker is exported) equals eager
  on other sizes, N = 0 and B = 1 included.
"""

from __future__ import annotations

import re

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from torch import nn

from components.ops.jagged import (
    jagged_to_padded,
    jagged_to_padded_reference,
    last_rows,
    last_rows_reference,
    lengths_to_offsets,
    lengths_to_offsets_reference,
    padded_rows,
    repeat_segments,
    repeat_segments_reference,
    segment_ids,
    segment_ids_reference,
)
from pipelines.serve.dense import export_size_oblivious

LENGTHS = st.lists(st.integers(0, 6), min_size=1, max_size=5)
# offsets [B + 1] of the edge cases: B = 0, one empty sample, N = 0 with B = 2, B = 1, mixed
EDGE_OFFSETS = [[0], [0, 0], [0, 0, 0], [0, 1], [0, 4], [0, 3, 3, 4]]


def _offsets(bounds: list[int]) -> torch.Tensor:
    return torch.tensor(bounds, dtype=torch.int64)


@pytest.mark.parametrize("bounds", EDGE_OFFSETS)
def test_index_outputs_are_int64_for_fast_ops_and_twins(bounds: list[int]) -> None:
    offsets = _offsets(bounds)
    n = bounds[-1]
    lengths = offsets[1:] - offsets[:-1]
    pairs = [
        (lengths_to_offsets(lengths), lengths_to_offsets_reference(lengths)),
        (segment_ids(offsets, n), segment_ids_reference(offsets, n)),
        *zip(repeat_segments(offsets, 2), repeat_segments_reference(offsets, 2), strict=True),
    ]
    pairs += [(last_rows(offsets, m), last_rows_reference(offsets, m)) for m in (0, 1, 3)]
    for fast, twin in pairs:
        assert fast.dtype == twin.dtype == torch.int64
        assert torch.equal(fast, twin)


def test_segment_ids_reference_names_the_broken_invariant() -> None:
    with pytest.raises(AssertionError, match=r"^offsets\[-1\] must equal n$"):
        segment_ids_reference(_offsets([0, 2, 3]), 4)


@settings(max_examples=25, deadline=None)
@given(lengths=LENGTHS, times=st.integers(1, 3))
def test_repeat_segments_with_known_n_equals_without(lengths: list[int], times: int) -> None:
    offsets = lengths_to_offsets(torch.tensor(lengths))
    rows, new_lengths = repeat_segments(offsets, times, n=sum(lengths))
    expected_rows, expected_lengths = repeat_segments(offsets, times)
    assert rows.dtype == new_lengths.dtype == torch.int64
    assert torch.equal(rows, expected_rows)
    assert torch.equal(new_lengths, expected_lengths)


def test_outputs_stay_on_the_offsets_device() -> None:
    """On ``meta`` (no values to read): with ``n`` given repeat_segments reads no value either
    (no host sync on an accelerator); B = 0 needs no value for the padded width."""
    offsets = torch.tensor([0, 2, 3], device="meta")
    rows, lengths = repeat_segments(offsets, 2, n=3)
    assert rows.device.type == lengths.device.type == "meta"
    assert rows.shape == (6,) and lengths.shape == (4,)
    index, mask = padded_rows(torch.zeros(1, dtype=torch.int64, device="meta"), 3)
    assert index.device.type == mask.device.type == "meta"
    assert index.shape == mask.shape == (0, 0)
    assert index.dtype == torch.int64 and mask.dtype == torch.bool


def test_negative_max_len_is_rejected_by_name() -> None:
    offsets, values = _offsets([0, 2]), torch.zeros(2)
    message = "^max_len must be >= 0, got -1$"
    with pytest.raises(ValueError, match=message):
        padded_rows(offsets, -1)
    with pytest.raises(ValueError, match=message):
        jagged_to_padded(values, offsets, -1)
    with pytest.raises(ValueError, match=message):
        last_rows(offsets, -1)


@pytest.mark.parametrize("op", ["fast", "reference"])
def test_unknown_keep_is_rejected_by_name(op: str) -> None:
    pad = jagged_to_padded if op == "fast" else jagged_to_padded_reference
    message = re.escape("keep must be one of ('last', 'first'), got 'middle'")
    with pytest.raises(ValueError, match=f"^{message}$"):
        pad(torch.zeros(2), _offsets([0, 2]), 1, keep="middle")


@pytest.mark.parametrize("bounds", EDGE_OFFSETS)
@pytest.mark.parametrize("max_len", [0, 1, 3])
def test_padded_shapes_dtypes_and_default_keep(bounds: list[int], max_len: int) -> None:
    """T = min(max_len, longest history): 0 for B = 0, N = 0 or max_len = 0."""
    offsets = _offsets(bounds)
    lengths = [b - a for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    width = min(max_len, max(lengths, default=0))
    values = torch.arange(float(2 * bounds[-1])).reshape(-1, 2)
    padded, mask = jagged_to_padded(values, offsets, max_len)  # keep defaults to "last"
    twin_padded, twin_mask = jagged_to_padded_reference(values, offsets, max_len)
    index, index_mask = padded_rows(offsets, max_len)
    assert padded.shape == twin_padded.shape == (len(lengths), width, 2)
    assert mask.shape == twin_mask.shape == index.shape == (len(lengths), width)
    assert padded.dtype == twin_padded.dtype == torch.float32
    assert mask.dtype == twin_mask.dtype == index_mask.dtype == torch.bool
    assert index.dtype == torch.int64
    assert torch.equal(padded, twin_padded) and torch.equal(mask, twin_mask)
    assert torch.equal(mask, index_mask)


@settings(max_examples=25, deadline=None)
@given(
    lengths=LENGTHS.filter(lambda lengths: sum(lengths) > 0),
    max_len=st.integers(1, 4),
    keep=st.sampled_from(["last", "first"]),
)
@example(lengths=[1, 0], max_len=2, keep="last")  # N = 1: row 0 is the only valid row
def test_padded_rows_index_is_always_a_row_of_values(
    lengths: list[int], max_len: int, keep: str
) -> None:
    """Masked slots too hold a valid row (N >= 1), so ``values[index]`` never goes out of range."""
    offsets = lengths_to_offsets(torch.tensor(lengths))
    values = torch.arange(1.0, sum(lengths) + 1.0)
    index, mask = padded_rows(offsets, max_len, keep)
    assert bool(((index >= 0) & (index < values.shape[0])).all())
    padded, _ = jagged_to_padded(values, offsets, max_len, keep)
    assert torch.equal(torch.where(mask, values[index], 0.0), padded)


class _Pad(nn.Module):
    def __init__(self, max_len: int, keep: str) -> None:
        super().__init__()
        self.max_len, self.keep = max_len, keep

    def forward(self, values: torch.Tensor, offsets: torch.Tensor) -> tuple[torch.Tensor, ...]:
        padded, mask = jagged_to_padded(values, offsets, self.max_len, self.keep)
        index, index_mask = padded_rows(offsets, self.max_len, self.keep)
        return padded, mask, index, index_mask


class _Repeat(nn.Module):
    def forward(self, values: torch.Tensor, offsets: torch.Tensor) -> tuple[torch.Tensor, ...]:
        rows, lengths = repeat_segments(offsets, 2)
        known_rows, known_lengths = repeat_segments(offsets, 3, n=values.shape[0])
        return rows, lengths, known_rows, known_lengths


def _export(module: nn.Module) -> nn.Module:
    """``module`` exported as the dense ranker is: symbolic N and B, size-oblivious."""
    example = (torch.randn(7, 2), _offsets([0, 3, 3, 7]))
    dynamic = ({0: torch.export.Dim("N", min=0)}, {0: torch.export.Dim("B1", min=1)})
    return export_size_oblivious(module, example, dynamic).module()


@pytest.mark.parametrize(
    ("max_len", "keep"),
    [
        (2, "last"),
        (3, "last"),
        (3, "first"),
        (0, "last"),  # max_len below the traced width's floor of 2: still max_len rows
        (1, "first"),
    ],
)
def test_exported_padding_equals_eager(max_len: int, keep: str) -> None:
    """The traced T is max(eager T, 2) (never 0 or 1, for AOTInductor's layouts); the extra
    slots are masked, zero and point at row 0; the eager slots are identical."""
    module = _Pad(max_len, keep)
    exported = _export(module)
    for bounds in [*EDGE_OFFSETS, [0, 5, 5, 6, 9]]:
        offsets = _offsets(bounds)
        values = torch.randn(bounds[-1], 2)
        got, expected = exported(values, offsets), module(values, offsets)
        width = expected[1].shape[1]
        for traced, eager in zip(got, expected, strict=True):
            assert traced.dtype == eager.dtype
            assert traced.shape == (eager.shape[0], max(width, 2), *eager.shape[2:]), bounds
            assert torch.equal(traced[:, :width], eager), bounds
            assert not traced[:, width:].any(), bounds


def test_exported_repeat_segments_equals_eager() -> None:
    module = _Repeat()
    exported = _export(module)
    for bounds in [*EDGE_OFFSETS, [0, 5, 5, 6, 9]]:
        offsets = _offsets(bounds)
        values = torch.randn(bounds[-1], 2)
        got, expected = exported(values, offsets), module(values, offsets)
        for traced, eager in zip(got, expected, strict=True):
            assert traced.dtype == torch.int64
            assert torch.equal(traced, eager), bounds
