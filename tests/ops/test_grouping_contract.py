"""The contract of ``group_behaviors`` around its results (tests/ops/test_grouping.py checks the
results against the loop twin): input errors, output devices and dtypes, the group codes its
sort key is built from, and the program ``torch.export`` makes of it (the serving path)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator

import pytest
import torch
from torch import nn

from components.ops.grouping import (
    GroupedBehaviors,
    _compact_group_codes,
    group_behaviors,
    group_behaviors_reference,
    group_stats_dim,
)
from components.ops.jagged import lengths_to_offsets
from pipelines.serve.dense import export_size_oblivious

FIELDS = ("behavior_index", "behavior_mask", "group_ids", "group_mask", "group_last_position")
DTYPES = {
    "behavior_index": torch.int64,
    "behavior_mask": torch.bool,
    "group_ids": torch.int64,
    "group_mask": torch.bool,
    "group_last_position": torch.int64,
    "stats": torch.float32,
}
GroupFn = Callable[..., GroupedBehaviors]
BOTH = pytest.mark.parametrize("fn", [group_behaviors, group_behaviors_reference])


def _batch(lengths: list[int], group_ids: list[int] | None = None) -> dict[str, torch.Tensor]:
    """A jagged batch with ``lengths`` rows per sample, 2 behavior types and 2 numeric fields."""
    n = sum(lengths)
    ids = torch.tensor(group_ids) if group_ids is not None else torch.arange(n) % 3 + 1
    return {
        "group_ids": ids.to(torch.int64),
        "offsets": lengths_to_offsets(torch.tensor(lengths, dtype=torch.int64)),
        "behavior_ids": torch.arange(n) % 2,
        "age": torch.arange(n, 0, -1).float() * 40000.0,
        "numeric": torch.arange(2 * n).float().view(n, 2),
    }


def _assert_same(got: GroupedBehaviors, want: GroupedBehaviors) -> None:
    for field in FIELDS:
        assert torch.equal(getattr(got, field), getattr(want, field)), field
    assert torch.allclose(got.stats, want.stats, atol=1e-5)


# --- input errors: each condition alone, the message names the argument ---------------------


@BOTH
@pytest.mark.parametrize("sizes", [(0, 2, 2), (2, 0, 2), (2, 2, 0)])
def test_each_size_below_one_is_rejected(fn: GroupFn, sizes: tuple[int, int, int]) -> None:
    inputs = _batch([3, 2])
    message = "max_groups, max_per_group and num_behaviors must be >= 1, got {}, {}, {}"
    with pytest.raises(ValueError, match=re.escape(message.format(*sizes))):
        fn(**inputs, max_groups=sizes[0], max_per_group=sizes[1], num_behaviors=sizes[2])


@BOTH
@pytest.mark.parametrize(
    ("name", "shape", "message"),
    [
        ("behavior_ids", (6,), "behavior_ids must be [N=5], got (6,)"),
        ("age", (5, 1), "age must be [N=5], got (5, 1)"),
        ("numeric", (5,), "numeric must be [N=5, F], got (5,)"),  # not 2-d, N rows
        ("numeric", (6, 2), "numeric must be [N=5, F], got (6, 2)"),  # 2-d, not N rows
    ],
)
def test_per_row_inputs_of_the_wrong_shape_are_named(
    fn: GroupFn, name: str, shape: tuple[int, ...], message: str
) -> None:
    inputs = _batch([3, 2])
    inputs[name] = torch.zeros(shape, dtype=inputs[name].dtype)
    with pytest.raises(ValueError, match=re.escape(message)):
        fn(**inputs, max_groups=2, max_per_group=2, num_behaviors=2)


@BOTH
@pytest.mark.parametrize(("bad", "row"), [(2, 3), (-1, 0)])
def test_behavior_ids_outside_the_vocabulary_are_named(fn: GroupFn, bad: int, row: int) -> None:
    inputs = _batch([3, 2])
    inputs["behavior_ids"][row] = bad
    message = f"behavior_ids must be in [0, 2); row {row} has {bad}"
    with pytest.raises(ValueError, match=re.escape(message)):
        fn(**inputs, max_groups=2, max_per_group=2, num_behaviors=2)


# --- outputs: on the inputs' device, in the documented dtypes, whatever torch's defaults -----


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


DEFAULTS: dict[str, Callable[[], contextlib.AbstractContextManager[object]]] = {
    # a training script's torch.set_default_device("cuda") / set_default_dtype(torch.float64)
    "default-device-meta": lambda: torch.device("meta"),
    "default-dtype-float64": lambda: _default_dtype(torch.float64),
}


@pytest.mark.parametrize("defaults", sorted(DEFAULTS))
@pytest.mark.parametrize(
    ("lengths", "group_ids", "skip_group"),
    [
        ([0, 0], [], None),  # no rows at all (N = 0)
        ([2, 1], [0, 0, 0], 0),  # every row in the skipped group: nothing kept
        ([4, 0, 3], [5, 0, 5, 2, 7, 7, 0], 0),
    ],
    ids=["empty", "all-skipped", "mixed"],
)
def test_outputs_ignore_torch_default_device_and_dtype(
    defaults: str, lengths: list[int], group_ids: list[int], skip_group: int | None
) -> None:
    inputs = _batch(lengths, group_ids)
    sizes = {"max_groups": 3, "max_per_group": 2, "num_behaviors": 2, "skip_group": skip_group}
    expected = group_behaviors(**inputs, **sizes)
    with DEFAULTS[defaults]():
        out = group_behaviors(**inputs, **sizes)
    batch, stats_dim = len(lengths), group_stats_dim(2, 2)
    for field, dtype in DTYPES.items():
        value = getattr(out, field)
        assert (value.device, value.dtype) == (torch.device("cpu"), dtype), field
    assert out.stats.shape == (batch, 3, stats_dim) and out.group_ids.shape == (batch, 3)
    assert out.behavior_index.shape == (batch, 3, 2)
    _assert_same(out, expected)


# --- group codes: the (sample, group) sort key must not overflow int64 ----------------------


@pytest.mark.parametrize(
    ("group_ids", "batch"),
    [
        ([2**63 - 1, 3, 2**63 - 1, 0, 2**62, 5, 2**63 - 1], [3, 2, 2]),  # non-negative, huge
        ([2**62 + 1, 2**61, 2**62 + 1, 7], [2, 2]),
        ([-(2**63), 2**63 - 1, 0, -1, 2**63 - 1, -(2**63)], [2, 3, 1]),  # the whole int64 range
    ],
)
def test_any_int64_group_ids_are_grouped_per_sample(group_ids: list[int], batch: list[int]) -> None:
    inputs = _batch(batch, group_ids)
    out = group_behaviors(**inputs, max_groups=3, max_per_group=2, num_behaviors=2)
    _assert_same(
        out, group_behaviors_reference(**inputs, max_groups=3, max_per_group=2, num_behaviors=2)
    )
    offsets = inputs["offsets"].tolist()
    for b in range(len(batch)):  # at most 3 distinct ids per sample: every one is kept
        kept = out.group_ids[b][out.group_mask[b]].tolist()
        assert sorted(kept) == sorted(set(group_ids[offsets[b] : offsets[b + 1]]))


@pytest.mark.parametrize(
    ("group_ids", "batch", "as_they_are"),
    [
        ([0, 5, 3, 5], 4, True),
        ([0, 1000, 7], 3, True),
        ([2, 9], 1, True),  # the smallest id need not be 0
        ([0, 2**61 - 2], 2, True),  # batch * (max + 1) = 2**62 - 2
        ([0, 2**61 - 1], 2, False),  # batch * (max + 1) = 2**62
        ([0, 2**62 - 2], 1, True),
        ([0, 2**62 - 1], 1, False),
        ([2**62 - 2, 4], 0, True),  # no samples: counted as one
        ([2**62 - 1, 4], 0, False),
        ([-5, 3, -5, 7], 1, False),  # negative ids
        ([2**63 - 1, 0, 2**63 - 1], 1, False),
    ],
)
def test_group_codes_are_the_ids_only_while_the_key_stays_below_2_62(
    group_ids: list[int], batch: int, as_they_are: bool
) -> None:
    """Non-negative ids are their own codes (``num_codes = max + 1``) while every key
    ``sample * num_codes + code`` stays below 2**62; other ids get compact, order-preserving
    codes ``0 .. distinct - 1`` (one extra ``unique`` sort)."""
    ids = torch.tensor(group_ids)
    codes, num_codes = _compact_group_codes(ids, batch)
    distinct = sorted(set(group_ids))
    if as_they_are:
        assert torch.equal(codes, ids) and num_codes == max(group_ids) + 1
        assert max(batch, 1) * num_codes < 2**62
    else:
        assert codes.tolist() == [distinct.index(g) for g in group_ids]
        assert num_codes == len(distinct)


# --- the exported program (serving): same results, its runtime checks fire ------------------


class _Grouping(nn.Module):
    def forward(
        self,
        group_ids: torch.Tensor,
        offsets: torch.Tensor,
        behavior_ids: torch.Tensor,
        age: torch.Tensor,
        numeric: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        out = group_behaviors(group_ids, offsets, behavior_ids, age, numeric, 3, 2, num_behaviors=2)
        return tuple(getattr(out, field) for field in DTYPES)


class _Codes(nn.Module):
    """The group codes of a 3-sample batch and their count (as a tensor: a traced size)."""

    def forward(self, group_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        codes, num_codes = _compact_group_codes(group_ids, 3)
        return codes, group_ids.new_full((1,), num_codes)


def _export(module: nn.Module, example: tuple[torch.Tensor, ...], dynamic: tuple) -> nn.Module:
    """``module`` exported as the dense ranker is (size-oblivious, symbolic sizes)."""
    return export_size_oblivious(module, example, dynamic).module()


@pytest.fixture(scope="module")
def exported_grouping() -> nn.Module:
    rows, batch = torch.export.Dim("rows", min=0), torch.export.Dim("batch", min=1)
    example = tuple(_batch([3, 4], [1, 5, 1, 2, 2, 9, 3]).values())
    return _export(
        _Grouping().eval(), example, ({0: rows}, {0: batch}, {0: rows}, {0: rows}, {0: rows})
    )


def _program_inputs(lengths: list[int], group_ids: list[int]) -> tuple[torch.Tensor, ...]:
    return tuple(_batch(lengths, group_ids).values())


@pytest.mark.parametrize(
    ("lengths", "group_ids"),
    [
        ([0, 0], []),
        ([1], [0]),
        ([3, 0, 5], [4, 0, 4, 0, 2, 2**40, 2**40, 1]),  # group 0 is a group; 2**40 the largest
        ([2, 3], [7, 7, 0, 7, 3]),  # sample 0's largest id, then sample 1's id 0
    ],
)
def test_exported_grouping_equals_eager(
    exported_grouping: nn.Module, lengths: list[int], group_ids: list[int]
) -> None:
    inputs = _program_inputs(lengths, group_ids)
    want = _Grouping()(*inputs)
    got = exported_grouping(*inputs)
    for field, a, b in zip(DTYPES, got, want, strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype, field
        same = torch.allclose(a, b, atol=1e-5) if field == "stats" else torch.equal(a, b)
        assert same, field


@pytest.mark.parametrize(
    ("group_ids", "message"),
    [
        ([3, -1, 2], "group ids must be in [0, "),  # negative: no code
        ([3, 2**40 + 1, 2], str(2**40)),  # past the bound that keeps the key in int64
    ],
)
def test_exported_grouping_rejects_group_ids_it_cannot_code(
    exported_grouping: nn.Module, group_ids: list[int], message: str
) -> None:
    with pytest.raises(RuntimeError, match=re.escape(message)):
        exported_grouping(*_program_inputs([3], group_ids))


def test_traced_group_codes_equal_eager_codes() -> None:
    rows = torch.export.Dim("rows", min=0)
    program = _export(_Codes(), (torch.tensor([4, 0, 9]),), ({0: rows},))
    for group_ids in ([0], [4, 0, 9, 4], [2**40, 17]):
        ids = torch.tensor(group_ids)
        codes, num_codes = program(ids)
        want_codes, want_num = _compact_group_codes(ids, 3)
        assert torch.equal(codes, want_codes) and num_codes.tolist() == [want_num], group_ids
