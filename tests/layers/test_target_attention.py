"""``MultiHeadTargetAttention.forward_shared`` (keys projected once per shared key set) against
its reference twin, ``forward`` on the keys gathered per query, on random inputs."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from components.layers.target_attention import MultiHeadTargetAttention


@settings(max_examples=40, deadline=None)
@given(
    sets=st.integers(1, 5),
    length=st.integers(1, 7),
    queries=st.integers(1, 12),
    heads=st.sampled_from([1, 2, 4]),
    seed=st.integers(0, 2**16),
)
def test_forward_shared_equals_forward_on_gathered_keys(
    sets: int, length: int, queries: int, heads: int, seed: int
) -> None:
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    attention = MultiHeadTargetAttention(8, 6, num_heads=heads).eval()
    query = torch.randn(queries, 8, generator=g)
    keys = torch.randn(sets, length, 6, generator=g)
    mask = torch.rand(sets, length, generator=g) < 0.6
    mask[0] = False  # a set with no valid key: its queries get zeros
    key_of = torch.randint(0, sets, (queries,), generator=g)
    with torch.no_grad():
        got = attention.forward_shared(query, keys, mask, key_of)
        want = attention(query, keys[key_of], mask[key_of])
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
    assert torch.all(got[key_of == 0] == 0)


@pytest.mark.parametrize(
    "key_of",
    [
        torch.zeros(300, dtype=torch.int64),  # one set holds every query: keys gathered
        torch.arange(300) % 40,  # spread over 40 sets: the [U, P] grid
        torch.zeros(0, dtype=torch.int64),  # no query
    ],
    ids=["skewed", "spread", "empty"],
)
def test_forward_shared_takes_either_layout_and_equals_forward(key_of: torch.Tensor) -> None:
    g = torch.Generator().manual_seed(0)
    attention = MultiHeadTargetAttention(8, 6, num_heads=2).eval()
    query = torch.randn(key_of.numel(), 8, generator=g)
    keys, mask = torch.randn(40, 9, 6, generator=g), torch.rand(40, 9, generator=g) < 0.7
    with torch.no_grad():
        got = attention.forward_shared(query, keys, mask, key_of)
        assert got.shape == (key_of.numel(), attention.output_dim)
        if key_of.numel():  # forward itself needs at least one query
            want = attention(query, keys[key_of], mask[key_of])
            torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
