"""GSU selection ops vs their loop twins, plus hand-written cases."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from components.ops.jagged import lengths_to_offsets
from components.ops.retrieval import (
    hamming_topk,
    hamming_topk_reference,
    hard_search,
    hard_search_reference,
    simhash_signatures,
    topk_by_score,
    topk_by_score_reference,
)

LENGTHS = st.lists(st.integers(0, 12), min_size=1, max_size=5)


def _assert_selection_equal(
    actual: tuple[torch.Tensor, torch.Tensor], expected: tuple[torch.Tensor, torch.Tensor]
) -> None:
    index, mask = actual
    assert index.dtype == torch.int64 and mask.dtype == torch.bool
    assert torch.equal(mask, expected[1])
    assert torch.equal(index, expected[0])


def test_hard_search_by_hand() -> None:
    keys = torch.tensor([4, 9, 4, 4, 1, 2, 2])
    offsets = torch.tensor([0, 4, 4, 7])
    index, mask = hard_search(keys, offsets, torch.tensor([4, 4, 3]), k=2)
    assert index.tolist() == [[2, 3], [0, 0], [0, 0]]  # most recent two 4s; empty; no match
    assert mask.tolist() == [[True, True], [False, False], [False, False]]
    index, mask = hard_search(keys, offsets, torch.tensor([9, 1, 2]), k=3)
    assert index.tolist() == [[1, 0, 0], [0, 0, 0], [5, 6, 0]]
    assert mask.tolist() == [[True, False, False], [False, False, False], [True, True, False]]


def test_topk_by_score_by_hand_ties_go_to_recent() -> None:
    scores = torch.tensor([0.5, 0.9, 0.5, 0.1, float("-inf"), 3.0])
    offsets = torch.tensor([0, 4, 6])
    index, mask = topk_by_score(scores, offsets, k=2)
    # Sample 0: 0.9 (row 1) then the tie 0.5 goes to row 2; time order -> [1, 2].
    assert index.tolist() == [[1, 2], [4, 5]]
    assert mask.all()
    index, mask = topk_by_score(scores, offsets, k=3)
    assert index.tolist() == [[0, 1, 2], [4, 5, 0]]
    assert mask.tolist() == [[True, True, True], [True, True, False]]


def test_topk_by_score_rejects_nan() -> None:
    with pytest.raises(ValueError, match="row 1"):
        topk_by_score(torch.tensor([0.0, float("nan")]), torch.tensor([0, 2]), 1)


def test_simhash_and_hamming_by_hand() -> None:
    planes = torch.eye(3)
    embeddings = torch.tensor([[1.0, -2.0, 3.0], [-1.0, -1.0, -1.0], [1.0, -1.0, 1.0]])
    signatures = simhash_signatures(embeddings, planes)
    assert signatures.tolist() == [[True, False, True], [False, False, False], [True, False, True]]
    query = simhash_signatures(torch.tensor([[2.0, -5.0, 0.5]]), planes)
    # Distances 0, 2, 0: the two zeros win; k=1 keeps the more recent one (row 2).
    index, mask = hamming_topk(signatures, torch.tensor([0, 3]), query, k=1)
    assert index.tolist() == [[2]] and mask.tolist() == [[True]]
    index, _ = hamming_topk(signatures, torch.tensor([0, 3]), query, k=2)
    assert index.tolist() == [[0, 2]]


def test_simhash_signature_is_sign_of_projection() -> None:
    generator = torch.Generator().manual_seed(0)
    embeddings = torch.randn(4, 5, 8, generator=generator)
    planes = torch.randn(8, 16, generator=generator)
    signatures = simhash_signatures(embeddings, planes)
    assert signatures.shape == (4, 5, 16) and signatures.dtype == torch.bool
    assert torch.equal(signatures, torch.einsum("abd,dm->abm", embeddings, planes) > 0)
    with pytest.raises(ValueError, match="planes"):
        simhash_signatures(embeddings, torch.randn(7, 16))


@settings(max_examples=100, deadline=None)
@given(
    lengths=LENGTHS,
    alphabet=st.integers(1, 6),
    k=st.integers(0, 15),
    seed=st.integers(0, 2**16),
)
def test_hard_search_matches_reference(
    lengths: list[int], alphabet: int, k: int, seed: int
) -> None:
    generator = torch.Generator().manual_seed(seed)
    offsets = lengths_to_offsets(torch.tensor(lengths))
    keys = torch.randint(0, alphabet, (sum(lengths),), generator=generator)
    queries = torch.randint(0, alphabet + 1, (len(lengths),), generator=generator)  # may miss
    _assert_selection_equal(
        hard_search(keys, offsets, queries, k), hard_search_reference(keys, offsets, queries, k)
    )


@settings(max_examples=100, deadline=None)
@given(
    lengths=LENGTHS,
    distinct_scores=st.integers(1, 20),
    with_inf=st.booleans(),
    k=st.integers(0, 15),
    seed=st.integers(0, 2**16),
)
def test_topk_by_score_matches_reference(
    lengths: list[int], distinct_scores: int, with_inf: bool, k: int, seed: int
) -> None:
    generator = torch.Generator().manual_seed(seed)
    offsets = lengths_to_offsets(torch.tensor(lengths))
    n = sum(lengths)
    scores = torch.randint(0, distinct_scores, (n,), generator=generator).float() - 3.5
    if with_inf:
        scores[torch.rand(n, generator=generator) < 0.3] = float("-inf")
    _assert_selection_equal(
        topk_by_score(scores, offsets, k), topk_by_score_reference(scores, offsets, k)
    )


@settings(max_examples=100, deadline=None)
@given(
    lengths=LENGTHS,
    bits=st.integers(1, 10),
    k=st.integers(0, 15),
    seed=st.integers(0, 2**16),
)
def test_hamming_topk_matches_reference(lengths: list[int], bits: int, k: int, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    offsets = lengths_to_offsets(torch.tensor(lengths))
    history = torch.rand(sum(lengths), bits, generator=generator) < 0.5
    query = torch.rand(len(lengths), bits, generator=generator) < 0.5
    _assert_selection_equal(
        hamming_topk(history, offsets, query, k), hamming_topk_reference(history, offsets, query, k)
    )
