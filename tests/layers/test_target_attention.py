"""``MultiHeadTargetAttention.forward_shared`` (keys projected once per shared key set) against
its reference twin, ``forward`` on the keys gathered per query, on random inputs."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from components.layers.target_attention import MultiHeadTargetAttention
from pipelines.serve.dense import export_size_oblivious


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


def _naive(
    att: MultiHeadTargetAttention,
    query: torch.Tensor,
    keys: torch.Tensor,
    mask: torch.Tensor,
    extra: torch.Tensor | None,
) -> torch.Tensor:
    """Per user b, candidate c and head h: softmax over the valid keys t of
    ``q_h . k_h(t) / sqrt(d) + extra[b, h, (c,) t]``, the weighted values, heads concatenated,
    the out projection; a user without a valid key gets zeros."""
    h, d, dv = att.num_heads, att.head_dim, att.value_dim
    q3 = query if query.dim() == 3 else query.unsqueeze(1)
    b_size, c_size = q3.shape[:2]
    out = torch.zeros(b_size, c_size, att.output_dim)
    for b in range(b_size):
        valid = [t for t in range(keys.shape[1]) if mask[b, t]]
        for c in range(c_size):
            q = att.q(q3[b, c])
            heads = []
            for head in range(h):
                qh = q[head * d : (head + 1) * d]
                logits = []
                for t in valid:
                    kh = att.k(keys[b, t])[head * d : (head + 1) * d]
                    bias = 0.0
                    if extra is not None:
                        bias = extra[b, head, t] if extra.dim() == 3 else extra[b, head, c, t]
                    logits.append(qh @ kh / d**0.5 + bias)
                pooled = torch.zeros(dv)
                if valid:
                    weights = torch.softmax(torch.stack(logits), dim=0)
                    for w, t in zip(weights, valid, strict=True):
                        pooled = pooled + w * att.v(keys[b, t])[head * dv : (head + 1) * dv]
                heads.append(pooled)
            out[b, c] = att.out(torch.cat(heads)) if valid else 0.0
    return out if query.dim() == 3 else out[:, 0]


@pytest.mark.parametrize("candidates", [None, 3])
@pytest.mark.parametrize("extra_rank", [None, 3, 4])
def test_attention_equals_the_naive_loop(candidates: int | None, extra_rank: int | None) -> None:
    g = torch.Generator().manual_seed(1)
    torch.manual_seed(1)
    att = MultiHeadTargetAttention(6, 5, num_heads=2, head_dim=4, value_dim=3).eval()
    shape = (2, 6) if candidates is None else (2, candidates, 6)
    query = torch.randn(*shape, generator=g)
    keys = torch.randn(2, 4, 5, generator=g)
    mask = torch.tensor([[True, False, True, True], [False, False, False, False]])
    extra = None
    if extra_rank == 3:
        extra = torch.randn(2, 2, 4, generator=g)
    elif extra_rank == 4:
        extra = torch.randn(2, 2, candidates or 1, 4, generator=g)
    with torch.no_grad():
        got = att(query, keys, mask, extra)
        assert got.shape == (*shape[:-1], att.output_dim)
        torch.testing.assert_close(got, _naive(att, query, keys, mask, extra), atol=1e-5, rtol=1e-5)


def test_projections_have_no_bias_and_head_sizes_default_from_the_query() -> None:
    att = MultiHeadTargetAttention(8, 5)
    assert att.num_heads == 2 and att.head_dim == 4 and att.value_dim == 4
    assert att.q.bias is None and att.k.bias is None and att.v.bias is None
    assert att.output_dim == 8
    tiny = MultiHeadTargetAttention(3, 5, num_heads=4)  # fewer query dims than heads
    assert tiny.head_dim == 1 and tiny.q.out_features == 4
    sized = MultiHeadTargetAttention(8, 5, num_heads=2, head_dim=6)
    assert sized.head_dim == 6 and sized.value_dim == 6 and sized.output_dim == 12


def test_exported_attention_equals_eager_on_other_sizes() -> None:
    """The traced path (one bmm per head, heads concatenated) equals the eager 4-d matmuls,
    with B and C symbolic as the dense ranker exports them."""
    torch.manual_seed(2)
    att = MultiHeadTargetAttention(6, 5, num_heads=3, head_dim=2, value_dim=4).eval()
    g = torch.Generator().manual_seed(2)

    def inputs(b: int, c: int) -> tuple[torch.Tensor, ...]:
        mask = torch.rand(b, 7, generator=g) < 0.6
        mask[0] = False  # a user without a valid key
        extra = torch.randn(b, 3, c, 7, generator=g)
        return torch.randn(b, c, 6, generator=g), torch.randn(b, 7, 5, generator=g), mask, extra

    batch, cands = torch.export.Dim("batch", min=1), torch.export.Dim("candidates", min=1)
    dynamic = ({0: batch, 1: cands}, {0: batch}, {0: batch}, {0: batch, 2: cands})
    program = export_size_oblivious(att, inputs(3, 4), dynamic).module()
    for b, c in [(1, 1), (2, 5), (4, 2)]:
        args = inputs(b, c)
        with torch.no_grad():
            torch.testing.assert_close(program(*args), att(*args), atol=1e-6, rtol=1e-5)
