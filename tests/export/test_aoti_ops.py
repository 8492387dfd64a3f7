"""Ops that AOTInductor once compiled wrongly, each compiled alone with a symbolic N and compared
with eager on other sizes (N = 0 included).

- ``group_behaviors``: the traced path compared ``sorted_key`` with ``sorted_key[:-1]``, which
  size-oblivious tracing sizes N - 1 without clamping: -1 for an empty batch, and the compiled
  DMGIN failed with ``numel: integer multiplication overflow`` on every all-empty request.
- ``simhash_codes``: ``(bits * 2**t).sum()`` over int64 compiled to garbage codes (SDIM's
  ``codes must be in [0, 8)`` on every request); now a float32 product with the bit weights.

The whole encoders are compiled by ``python -m pipelines.export --check-all`` (docs/serving.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from components.ops.grouping import group_behaviors
from components.ops.hashing import simhash_codes
from pipelines.serve.dense import aoti_package, export_size_oblivious


def _compile(module: nn.Module, example: tuple, dynamic: tuple, path: Path):
    """``module`` exported as the dense ranker is (size-oblivious, symbolic dims), compiled."""
    aoti_package(export_size_oblivious(module, example, dynamic), path)
    return torch._inductor.aoti_load_package(str(path))


class _Codes(nn.Module):
    def __init__(self, planes: torch.Tensor, bits: int) -> None:
        super().__init__()
        self.register_buffer("planes", planes)
        self.bits = bits

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return simhash_codes(embeddings, self.planes, self.bits)


def test_compiled_simhash_codes_equal_eager(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(0)
    module = _Codes(torch.randn(8, 12 * 3, generator=generator), bits=3).eval()
    rows = torch.export.Dim("rows", min=0)
    compiled = _compile(module, (torch.randn(37, 8),), ({0: rows},), tmp_path / "codes.pt2")
    for n in (0, 1, 5, 300):
        embeddings = torch.randn(n, 8, generator=generator)
        expected = module(embeddings)
        got = compiled(embeddings)
        assert torch.equal(got, expected), n
        if n:
            assert 0 <= int(got.min()) and int(got.max()) < 8


class _Grouping(nn.Module):
    def forward(
        self,
        group_ids: torch.Tensor,
        lengths: torch.Tensor,
        behavior_ids: torch.Tensor,
        age: torch.Tensor,
        numeric: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        offsets = torch.cat([lengths.new_zeros(1), torch.cumsum(lengths, 0)])
        out = group_behaviors(group_ids, offsets, behavior_ids, age, numeric, 4, 3, 2, skip_group=0)
        return out.behavior_index, out.behavior_mask, out.group_ids, out.group_mask, out.stats


def _grouping_inputs(lengths: list[int], generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    n = sum(lengths)
    return (
        torch.randint(0, 6, (n,), generator=generator),
        torch.tensor(lengths, dtype=torch.int64),
        torch.randint(0, 2, (n,), generator=generator),
        torch.rand(n, generator=generator) * 1e6,
        torch.rand(n, 1, generator=generator),
    )


def test_compiled_grouping_equals_eager_on_empty_batches(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(0)
    rows, batch = torch.export.Dim("rows", min=0), torch.export.Dim("batch", min=1)
    dynamic = ({0: rows}, {0: batch}, {0: rows}, {0: rows}, {0: rows})
    module = _Grouping().eval()
    example = _grouping_inputs([5, 9, 23], generator)
    compiled = _compile(module, example, dynamic, tmp_path / "grouping.pt2")
    for lengths in ([0, 0], [0], [3, 0, 11], [40]):
        inputs = _grouping_inputs(lengths, generator)
        for got, expected in zip(compiled(*inputs), module(*inputs), strict=True):
            assert got.shape == expected.shape, lengths
            assert torch.allclose(got.float(), expected.float(), atol=1e-5), lengths


@pytest.mark.parametrize("n", [0, 4])
def test_eager_codes_stay_integers_in_range(n: int) -> None:
    planes = torch.randn(6, 2 * 16, generator=torch.Generator().manual_seed(1))
    codes = simhash_codes(torch.randn(n, 6), planes, bits=16)
    assert codes.dtype == torch.int64 and codes.shape == (n, 2)
    assert bool(((codes >= 0) & (codes < 2**16)).all())
