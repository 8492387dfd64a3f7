"""CiUBM: shapes, padding invariance, gradient flow, frozen content, reference twins."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from components.encoders.base import EncoderSpec, History, Query, take_history_rows
from components.encoders.ciubm import (
    CiUBM,
    CiUBMConfig,
    SimilarityHistogram,
    content_similarity,
    content_similarity_reference,
    histogram_counts_reference,
    masked_topk,
    masked_topk_reference,
)

NUM_ITEMS, D, D_CONTENT = 50, 8, 12


def make_inputs(lengths: list[int], seed: int = 0, d: int = D, behavior_dim: int = 0):
    g = torch.Generator().manual_seed(seed)
    lengths_t = torch.tensor(lengths, dtype=torch.int64)
    n, b = int(lengths_t.sum()), len(lengths)
    offsets = torch.zeros(b + 1, dtype=torch.int64)
    offsets[1:] = torch.cumsum(lengths_t, 0)
    item_ids = torch.randint(1, NUM_ITEMS, (n,), generator=g)
    query = Query(
        embeddings=torch.randn(b, d, generator=g, requires_grad=True),
        item_ids=torch.randint(1, NUM_ITEMS, (b,), generator=g),
        category_ids=torch.ones(b, dtype=torch.int64),
        group_ids=torch.ones(b, dtype=torch.int64),
    )
    history = History(
        embeddings=torch.randn(n, d, generator=g, requires_grad=True),
        lengths=lengths_t,
        offsets=offsets,
        item_ids=item_ids,
        category_ids=torch.ones(n, dtype=torch.int64),
        group_ids=torch.ones(n, dtype=torch.int64),
        behavior_ids=torch.ones(n, dtype=torch.int64),
        age=torch.rand(n, generator=g) + 1,
        numeric=torch.zeros(n, 0),
        behavior_embeddings=torch.randn(n, behavior_dim, generator=g),
    )
    return query, history


def slice_sample(query: Query, history: History, b: int) -> tuple[Query, History]:
    start, end = int(history.offsets[b]), int(history.offsets[b + 1])
    rows = slice(start, end)
    q = Query(
        *(
            t[b : b + 1]
            for t in (query.embeddings, query.item_ids, query.category_ids, query.group_ids)
        )
    )
    h = take_history_rows(history, rows, history.lengths[b : b + 1])
    return q, h


def content_table(seed: int = 1) -> torch.Tensor:
    table = torch.nn.functional.normalize(
        torch.randn(NUM_ITEMS, D_CONTENT, generator=torch.Generator().manual_seed(seed)), dim=-1
    )
    table[0] = 0
    return table


def build(config: CiUBMConfig | None = None, behavior_dim: int = 0) -> CiUBM:
    torch.manual_seed(0)
    spec = EncoderSpec(embedding_dim=D, behavior_dim=behavior_dim)
    return CiUBM(spec, config or CiUBMConfig(top_k=3), content_embeddings=content_table())


def test_output_shape_for_every_part_combination():
    query, history = make_inputs([5, 0, 2, 7])
    for cfg in [
        CiUBMConfig(top_k=3),
        CiUBMConfig(top_k=None, use_histogram=False),
        CiUBMConfig(top_k=2, use_attention=False, histogram_over_topk=True),
        CiUBMConfig(top_k=4, content_in_attention=False, output_hidden=()),
    ]:
        enc = build(cfg)
        out = enc(query, history)
        assert out.shape == (4, enc.output_dim)
        assert torch.isfinite(out).all()


def test_behavior_embeddings_are_used_when_present():
    query, history = make_inputs([3, 4], behavior_dim=2)
    enc = build(CiUBMConfig(top_k=None, use_histogram=False), behavior_dim=2)
    before = enc(query, history)
    history.behavior_embeddings = history.behavior_embeddings + 1.0
    assert not torch.allclose(before, enc(query, history))


def test_padding_invariance_each_sample_alone_equals_in_batch():
    query, history = make_inputs([6, 1, 0, 9, 3], seed=3)
    enc = build(CiUBMConfig(top_k=4)).eval()
    batched = enc(query, history)
    for b in range(5):
        alone = enc(*slice_sample(query, history, b))
        torch.testing.assert_close(alone[0], batched[b], rtol=1e-5, atol=1e-6)


def test_topk_keeps_most_content_similar_behaviors():
    # behaviors outside the top-K by content cosine must not change the output
    query, history = make_inputs([6], seed=5)
    enc = build(CiUBMConfig(top_k=2, use_histogram=False))
    table = enc.content
    sims = torch.nn.functional.normalize(
        table[history.item_ids], dim=-1
    ) @ torch.nn.functional.normalize(table[query.item_ids[0]], dim=0)
    dropped = sims.argsort(descending=True)[2:]
    out = enc(query, history)
    emb = history.embeddings.detach().clone()
    emb[dropped] += 10.0
    history.embeddings = emb
    torch.testing.assert_close(enc(query, history), out)


def test_gradients_reach_id_parts_and_never_the_content_table():
    query, history = make_inputs([4, 6, 2])
    enc = build(CiUBMConfig(top_k=3))
    enc(query, history).sum().backward()
    assert query.embeddings.grad is not None and query.embeddings.grad.abs().sum() > 0
    assert history.embeddings.grad is not None and history.embeddings.grad.abs().sum() > 0
    for name in (
        "attention.q.weight",
        "attention.k.weight",
        "attention.v.weight",
        "attention.gamma",
        "histogram.bin_vectors",
    ):
        grad = dict(enc.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
    assert not enc.content.requires_grad and enc.content.grad is None
    assert all(p is not enc.content for p in enc.parameters())
    assert "content" in enc.state_dict()
    assert "content" not in dict(enc.named_parameters())


def test_content_table_changes_output_and_load_content_roundtrip():
    query, history = make_inputs([5, 3])
    enc = build()
    out = enc(query, history)
    enc.load_content(content_table(seed=9))
    assert not torch.allclose(out, enc(query, history))
    fresh = CiUBM(EncoderSpec(embedding_dim=D), CiUBMConfig(top_k=3))
    fresh.load_state_dict(enc.state_dict())
    torch.testing.assert_close(fresh(query, history), enc(query, history))


def test_missing_content_table_is_a_clear_error():
    query, history = make_inputs([2])
    enc = CiUBM(EncoderSpec(embedding_dim=D))
    try:
        enc(query, history)
    except RuntimeError as err:
        assert "load_content" in str(err)
    else:
        raise AssertionError("expected RuntimeError")


@settings(max_examples=40, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 12), min_size=1, max_size=6),
    k=st.integers(1, 8),
    seed=st.integers(0, 1000),
)
def test_masked_topk_matches_reference(lengths, k, seed):
    g = torch.Generator().manual_seed(seed)
    offsets = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()])
    scores = torch.randn(int(offsets[-1]), generator=g)
    index, mask = masked_topk(scores, offsets, k)
    expected = masked_topk_reference(scores, offsets, k)
    for b, rows in enumerate(expected):
        got = index[b][mask[b]].tolist()
        assert sorted(scores[got].tolist()) == sorted(scores[rows].tolist())
        assert all(int(offsets[b]) <= r < int(offsets[b + 1]) for r in got)


@settings(max_examples=40, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 15), min_size=1, max_size=5),
    bins=st.integers(1, 25),
    seed=st.integers(0, 1000),
)
def test_histogram_counts_match_reference(lengths, bins, seed):
    g = torch.Generator().manual_seed(seed)
    lengths_t = torch.tensor(lengths)
    sims = torch.rand(int(lengths_t.sum()), generator=g) * 2 - 1
    sims[: min(2, sims.numel())] = torch.tensor([1.0, -1.0])[: min(2, sims.numel())]
    hist = SimilarityHistogram(bins, 3)
    torch.testing.assert_close(
        hist.counts(sims, lengths_t), histogram_counts_reference(sims, lengths_t, bins)
    )
    assert hist(sims, lengths_t).shape == (len(lengths), bins * 3)


@settings(max_examples=40, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 9), min_size=1, max_size=6),
    chunk_rows=st.one_of(st.none(), st.integers(1, 7)),
    zero_rows=st.sets(st.integers(0, 19), max_size=5),
    seed=st.integers(0, 2**16),
)
def test_chunked_content_similarity_matches_the_one_shot_twin(
    lengths: list[int], chunk_rows: int | None, zero_rows: set[int], seed: int
) -> None:
    g = torch.Generator().manual_seed(seed)
    table = torch.randn(20, D_CONTENT, generator=g) * 3
    table[sorted(zero_rows)] = 0.0  # items without content: similarity 0, never NaN
    lengths_t = torch.tensor(lengths, dtype=torch.int64)
    history_ids = torch.randint(0, 20, (int(lengths_t.sum()),), generator=g)
    query_ids = torch.randint(0, 20, (len(lengths),), generator=g)
    offsets = torch.cat([torch.zeros(1, dtype=torch.int64), lengths_t.cumsum(0)])
    got = content_similarity(table, query_ids, history_ids, offsets, chunk_rows=chunk_rows)
    want = content_similarity_reference(table, query_ids, history_ids, lengths_t)
    assert got.shape == want.shape == history_ids.shape
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
    assert got.abs().max().item() <= 1.0 + 1e-5 if got.numel() else True
