"""What the SimHash ops, the group index and their loop twins promise besides their values:
int64 codes, counts and rows and a bool mask (twins included, so a twin comparison cannot pass
on float zeros), outputs on the inputs' device whatever torch's default device, a strict sign
(a zero projection is bit 0), and twins that refuse mismatched inputs instead of truncating."""

from __future__ import annotations

import pytest
import torch

from components.ops.group_index import lookup_group_reference
from components.ops.hashing import (
    bucket_sums,
    bucket_sums_reference,
    simhash_codes,
    simhash_codes_reference,
)

OFFSETS = torch.tensor([0, 3, 3, 7])


def _codes_inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    values = torch.randn(7, 3, generator=g)
    codes = torch.randint(0, 4, (7, 2), generator=g)
    return values, OFFSETS, codes


@pytest.mark.parametrize("fn", [bucket_sums, bucket_sums_reference])
def test_bucket_counts_are_int64_and_sums_keep_the_values_dtype(fn) -> None:
    sums, counts = fn(*_codes_inputs(), 4)
    assert sums.dtype == torch.float32 and counts.dtype == torch.int64
    assert sums.shape == (3, 2, 4, 3) and counts.shape == (3, 2, 4)
    assert int(counts[1].sum()) == 0  # the empty user
    assert int(counts.sum()) == 7 * 2  # every row once per hash


@pytest.mark.parametrize("fn", [bucket_sums, bucket_sums_reference])
def test_bucket_sums_keep_float64_values_in_float64(fn) -> None:
    values, offsets, codes = _codes_inputs()
    sums, _ = fn(values.double(), offsets, codes, 4)
    assert sums.dtype == torch.float64
    assert torch.allclose(sums.float(), fn(values, offsets, codes, 4)[0], atol=1e-6)


def test_bucket_sums_stay_on_the_inputs_device_whatever_the_default() -> None:
    values, offsets, codes = _codes_inputs()
    want = bucket_sums(values, offsets, codes, 4)
    with torch.device("meta"):  # a default device that the op must not pick up
        got = bucket_sums(values, offsets, codes, 4)
    for g, w in zip(got, want, strict=True):
        assert g.device.type == "cpu"
        assert torch.equal(g, w)


@pytest.mark.parametrize("fn", [simhash_codes, simhash_codes_reference])
def test_a_zero_projection_is_bit_zero(fn) -> None:
    """Bit t is ``e . plane_t > 0``, strictly: the zero vector is in bucket 0 under every hash;
    a plane's own direction sets that plane's bit."""
    planes = torch.randn(4, 3 * 2, generator=torch.Generator().manual_seed(1))
    embeddings = torch.stack([torch.zeros(4), planes[:, 0]])
    codes = fn(embeddings, planes, 2)
    assert codes.dtype == torch.int64
    assert codes[0].tolist() == [0, 0, 0]
    assert int(codes[1, 0]) % 2 == 1  # positive on its own plane: bit 0 of hash 0 set


def test_group_index_twin_returns_int64_rows_and_a_bool_mask() -> None:
    rows, mask = lookup_group_reference(
        torch.tensor([3, 1, 3, 3, 2]), torch.tensor([0, 4, 5]), torch.tensor([0, 1]),
        torch.tensor([3, 3]), k=2,
    )  # fmt: skip
    assert rows.dtype == torch.int64 and mask.dtype == torch.bool
    assert rows.tolist() == [[2, 3], [0, 0]] and mask.tolist() == [[True, True], [False, False]]


def test_group_index_twin_refuses_users_and_groups_of_other_lengths() -> None:
    with pytest.raises(ValueError):
        lookup_group_reference(
            torch.tensor([3, 1]), torch.tensor([0, 2]), torch.tensor([0, 0]), torch.tensor([3]), 1
        )
