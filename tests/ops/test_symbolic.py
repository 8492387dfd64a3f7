"""The size helpers behind the traced paths: eager errors name the argument and the bad row;
while torch.export traces they become runtime assertions of the program that fire on bad input
and pass on good input (N = 0, values at the bounds, 2-d values); bincount counts on the ids'
device."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from components.ops.symbolic import bincount, check_offsets, check_range, value_max, value_min
from pipelines.serve.dense import export_size_oblivious


def _export(module: nn.Module, example: tuple[torch.Tensor, ...], dims: tuple) -> nn.Module:
    return export_size_oblivious(module, example, dims).module()


class _Offsets(nn.Module):
    def forward(self, values: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        check_offsets(offsets, values.shape[0], name="history offsets")
        return values.sum() + offsets.sum()


class _Range(nn.Module):
    def forward(self, values: torch.Tensor) -> torch.Tensor:
        check_range(values, 0, 5, "ids")
        return values.sum()


class _Widths(nn.Module):
    def forward(self, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        wide = torch.zeros(value_max(lengths, upper=10, lower=2))
        low = torch.zeros(value_min(lengths + 1, lower=1))
        return wide, low


def test_eager_offsets_errors_name_the_argument() -> None:
    check_offsets(torch.tensor([0]), 0)  # B = 0: one offset is enough
    check_offsets(torch.tensor([0, 2, 5]), 5)
    with pytest.raises(ValueError, match=r"^offsets must be \[B \+ 1\] ending at N=5, got \(3,\)"):
        check_offsets(torch.tensor([0, 2, 4]), 5)
    with pytest.raises(ValueError, match=r"^lens must be \[B \+ 1\] ending at N=0, got \(0,\)$"):
        check_offsets(torch.zeros(0, dtype=torch.int64), 0, name="lens")
    with pytest.raises(ValueError, match=r"got \(1, 2\)$"):
        check_offsets(torch.tensor([[0, 0]]), 0)


def test_eager_range_error_names_the_first_bad_row() -> None:
    check_range(torch.tensor([0, 4]), 0, 5, "ids")
    with pytest.raises(ValueError, match=r"^ids must be in \[0, 5\); row 1 has 7$"):
        check_range(torch.tensor([0, 7, -1]), 0, 5, "ids")
    with pytest.raises(ValueError, match=r"^values must be >= 1, got 0$"):
        value_min(torch.tensor([3, 0]), lower=1)


def test_traced_offsets_check_is_a_runtime_assertion() -> None:
    program = _export(
        _Offsets(),
        (torch.randn(5), torch.tensor([0, 2, 5])),
        ({0: torch.export.Dim("n", min=0)}, {0: torch.export.Dim("b1", min=1)}),
    )
    program(torch.randn(3), torch.tensor([0, 1, 1, 3]))
    program(torch.randn(0), torch.tensor([0, 0]))
    with pytest.raises(RuntimeError, match="history offsets must end at N"):
        program(torch.randn(3), torch.tensor([0, 3, 2]))  # ends at 2, not N = 3


def test_traced_range_check_keeps_both_bounds() -> None:
    program = _export(_Range(), (torch.tensor([[1, 2], [3, 4]]),), ({0: torch.export.Dim("n")},))
    program(torch.tensor([[0, 4], [4, 0]]))  # both bounds inside: low included, high excluded
    program(torch.zeros(0, 2, dtype=torch.int64))  # nothing to check
    for bad in ([[0, 5]], [[-1, 0]], [[2, 3], [9, 1]]):
        with pytest.raises(RuntimeError, match=r"ids must be in \[0, 5\)"):
            program(torch.tensor(bad))


def test_traced_sizes_follow_the_values_and_their_bounds() -> None:
    program = _export(_Widths(), (torch.tensor([3, 1, 4]),), ({0: torch.export.Dim("b")},))
    wide, low = program(torch.tensor([0, 7, 1]))
    assert wide.shape == (7,) and low.shape == (1,)
    wide, low = program(torch.tensor([1, 0]))
    assert wide.shape == (2,) and low.shape == (1,)  # at least lower=2
    with pytest.raises(RuntimeError):
        program(torch.tensor([11, 0]))  # past upper=10


def test_bincount_counts_on_the_ids_device() -> None:
    ids = torch.tensor([0, 2, 2, 4])
    with torch.device("meta"):  # a default device the op must not pick up
        counts = bincount(ids, 6)
    assert counts.device.type == "cpu" and counts.dtype == torch.int64
    assert counts.tolist() == [1, 0, 2, 0, 1, 0]


def test_eager_sizes_are_python_ints_with_their_floors() -> None:
    assert value_max(torch.tensor([3, 7, 1]), upper=10) == 7
    assert value_max(torch.tensor([1]), upper=10, lower=2) == 2
    assert value_max(torch.zeros(0, dtype=torch.int64), upper=10, lower=2) == 2
    assert value_min(torch.tensor([4, 0, 3])) == 0  # default lower bound 0
    assert value_min(torch.tensor([4, 1]), lower=1) == 1  # the bound itself is allowed


def test_bincount_takes_int32_ids() -> None:
    assert bincount(torch.tensor([1, 1, 0], dtype=torch.int32), 3).tolist() == [1, 2, 0]
