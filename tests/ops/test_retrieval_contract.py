"""What every retrieval op and its loop twin promise besides the rows they pick: ``index`` is
int64 and ``mask`` bool (twins included, so a twin comparison cannot pass on float zeros), the
outputs live on the inputs' device, a bad ``k`` is named, and the Hamming twin never truncates
mismatched signatures silently."""

from __future__ import annotations

import pytest
import torch

from components.ops import retrieval
from components.ops.retrieval import (
    hamming_topk,
    hamming_topk_reference,
    hard_search,
    hard_search_reference,
    topk_by_score,
    topk_by_score_reference,
)

OFFSETS = torch.tensor([0, 3, 3, 7])


def _case(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``name``'s output on a fixed batch (computed in the test, not when pytest collects, so
    that it runs the code under test as it is then)."""
    g = torch.Generator().manual_seed(0)
    keys = torch.randint(0, 3, (7,), generator=g)
    query = torch.randint(0, 3, (3,), generator=g)
    scores = torch.randn(7, generator=g)
    sig, qsig = torch.rand(7, 5, generator=g) > 0.5, torch.rand(3, 5, generator=g) > 0.5
    calls = {
        "hard_search": lambda: hard_search(keys, OFFSETS, query, 2),
        "hard_search_reference": lambda: hard_search_reference(keys, OFFSETS, query, 2),
        "topk_by_score": lambda: topk_by_score(scores, OFFSETS, 2),
        "topk_by_score_reference": lambda: topk_by_score_reference(scores, OFFSETS, 2),
        "hamming_topk": lambda: hamming_topk(sig, OFFSETS, qsig, 2),
        "hamming_topk_reference": lambda: hamming_topk_reference(sig, OFFSETS, qsig, 2),
    }
    return calls[name]()


NAMES = [
    "hard_search",
    "hard_search_reference",
    "topk_by_score",
    "topk_by_score_reference",
    "hamming_topk",
    "hamming_topk_reference",
]


@pytest.mark.parametrize("name", NAMES)
def test_index_is_int64_and_mask_bool(name: str) -> None:
    index, mask = _case(name)
    assert index.dtype == torch.int64, name
    assert mask.dtype == torch.bool, name
    assert index.shape == mask.shape == (3, 2), name
    assert not bool(mask[1].any()), "the empty sample selects nothing"
    assert int(index[~mask].abs().sum()) == 0, "masked slots hold row 0"


def test_scattered_slots_stay_on_the_inputs_device() -> None:
    """The shared scatter makes its outputs on the device of the rows and offsets (meta here:
    a CPU default would put them elsewhere)."""
    rows = torch.tensor([0, 2, 5], device="meta")
    offsets = torch.tensor([0, 3, 3, 7], device="meta")
    index, mask = retrieval._scatter_in_time_order(rows, 3, 2, offsets)
    assert index.device.type == mask.device.type == "meta"
    assert index.dtype == torch.int64 and mask.dtype == torch.bool
    assert index.shape == mask.shape == (3, 2)


@pytest.mark.parametrize(
    "call",
    [
        lambda k: hard_search(torch.tensor([1, 2]), torch.tensor([0, 2]), torch.tensor([1]), k),
        lambda k: topk_by_score(torch.tensor([0.1, 0.2]), torch.tensor([0, 2]), k),
    ],
)
def test_negative_k_is_named(call) -> None:
    with pytest.raises(ValueError, match=r"k must be >= 0, got -1"):
        call(-1)


def test_hamming_twin_refuses_signatures_of_other_widths() -> None:
    with pytest.raises(ValueError):
        hamming_topk_reference(
            torch.ones(2, 4, dtype=torch.bool),
            torch.tensor([0, 2]),
            torch.ones(1, 3, dtype=torch.bool),
            1,
        )
