"""DIN, DINFull and CiUBM against naive per-user computations written from their papers'
formulas (and the docstrings' documented choices), on the encoders' own parameters."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from components import (
    DIN,
    CiUBM,
    CiUBMConfig,
    DINConfig,
    DINFull,
    EncoderSpec,
    History,
    Query,
    random_history,
)

D, DB, NUM_ITEMS, D_CONTENT = 8, 3, 40, 6
SPEC = EncoderSpec(D, DB, num_behaviors=3, num_numeric=1, num_groups=5)


def make_inputs(lengths: list[int], seed: int = 0) -> tuple[Query, History]:
    history = random_history(SPEC, lengths, num_items=NUM_ITEMS, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    b = len(lengths)
    query = Query(
        embeddings=torch.randn(b, D, generator=g),
        item_ids=torch.randint(1, NUM_ITEMS, (b,), generator=g),
        category_ids=torch.ones(b, dtype=torch.int64),
        group_ids=torch.ones(b, dtype=torch.int64),
    )
    return query, history


def rows_of(history: History, s: int) -> list[int]:
    return list(range(int(history.offsets[s]), int(history.offsets[s + 1])))


def naive_din(unit, q: torch.Tensor, keys: list[torch.Tensor]) -> torch.Tensor:
    """DIN: sum_i a(q, e_i) e_i, a = MLP([q, e, q - e, q * e]), no softmax."""
    out = torch.zeros_like(q)
    for e in keys:
        out = out + unit.mlp(torch.cat([q, e, q - e, q * e]))[0] * e
    return out


@settings(max_examples=15, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 15), min_size=1, max_size=4),
    max_len=st.integers(1, 8),
    full=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_din_equals_the_naive_sum_over_the_most_recent(
    lengths: list[int], max_len: int, full: bool, seed: int
) -> None:
    torch.manual_seed(seed)
    encoder = (DINFull if full else DIN)(SPEC, DINConfig(max_len=max_len)).eval()
    query, history = make_inputs(lengths, seed)
    with torch.no_grad():
        out = encoder(query, history)
        for s in range(len(lengths)):
            kept = rows_of(history, s)[-max_len:]
            expected = naive_din(encoder.unit, query.embeddings[s], history.embeddings[kept])
            torch.testing.assert_close(out[s], expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("full", [False, True])
def test_din_equals_the_naive_sum_on_a_fixed_batch(full: bool) -> None:
    torch.manual_seed(0)
    encoder = (DINFull if full else DIN)(SPEC, DINConfig(max_len=4)).eval()
    query, history = make_inputs([0, 2, 9, 4], seed=1)
    with torch.no_grad():
        out = encoder(query, history)
        for s in range(4):
            kept = rows_of(history, s)[-4:]
            expected = naive_din(encoder.unit, query.embeddings[s], history.embeddings[kept])
            torch.testing.assert_close(out[s], expected, atol=1e-5, rtol=1e-4)


def test_dinfull_reads_the_whole_history() -> None:
    torch.manual_seed(0)
    encoder = DINFull(SPEC).eval()
    query, history = make_inputs([300])
    with torch.no_grad():
        base = encoder(query, history)
        history.embeddings[0] = torch.randn(D) * 3  # the oldest behavior
        assert not torch.allclose(encoder(query, history), base)


# -- CiUBM ------------------------------------------------------------------------------------


def content_table(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    table = torch.randn(NUM_ITEMS, D_CONTENT, generator=g)
    table[3] = 0.0  # an item without content: similarity 0
    return table


def naive_ciubm(encoder: CiUBM, query: Query, history: History, s: int) -> torch.Tensor:
    cfg, table = encoder.config, encoder.content
    rows = rows_of(history, s)

    def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
        if float(a.norm()) == 0 or float(b.norm()) == 0:
            return 0.0
        return float(a @ b) / (float(a.norm()) * float(b.norm()))

    candidate = table[int(query.item_ids[s])]
    sim = {r: cosine(table[int(history.item_ids[r])], candidate) for r in rows}
    k = len(rows) if cfg.top_k is None else cfg.top_k
    kept = sorted(sorted(rows, key=lambda r: (-sim[r], -r))[:k])
    parts = []
    if encoder.histogram is not None:
        bins = cfg.num_bins
        counts = [0] * bins
        for r in kept if cfg.histogram_over_topk else rows:
            counts[min(max(math.floor((sim[r] + 1.0) * bins / 2.0), 0), bins - 1)] += 1
        weights = torch.log1p(torch.tensor(counts, dtype=torch.float32))
        parts.append((weights[:, None] * encoder.histogram.bin_vectors).flatten())
    if encoder.attention is not None:
        att = encoder.attention
        q = att.q(query.embeddings[s])
        if kept:
            logits, values = [], []
            for r in kept:
                key = torch.cat([history.embeddings[r], history.behavior_embeddings[r]])
                a_id = float(att.k(key) @ q) / math.sqrt(q.numel())
                if att.use_content:
                    g1, g2, g3 = (float(x) for x in att.gamma)
                    a_id = g1 * a_id + g2 * sim[r] + g3 * a_id * sim[r]
                logits.append(a_id)
                values.append(att.v(key))
            weights = torch.softmax(torch.tensor(logits), dim=0)
            parts.append((weights[:, None] * torch.stack(values)).sum(dim=0))
        else:
            parts.append(torch.zeros(q.numel()))
    out = torch.cat(parts)
    return encoder.output_mlp(out) if encoder.output_mlp is not None else out


CIUBM_CONFIGS = {
    "default": CiUBMConfig(top_k=4),
    "histogram_over_topk": CiUBMConfig(top_k=4, histogram_over_topk=True),
    "no_content_in_attention": CiUBMConfig(top_k=4, content_in_attention=False),
    "no_histogram": CiUBMConfig(top_k=4, use_histogram=False),
    "no_attention": CiUBMConfig(top_k=4, use_attention=False),
    "all_rows": CiUBMConfig(top_k=None, output_hidden=()),
}


def build_ciubm(config: CiUBMConfig, seed: int = 0) -> CiUBM:
    torch.manual_seed(seed)
    encoder = CiUBM(SPEC, config, content_embeddings=content_table(seed)).eval()
    with torch.no_grad():  # g3 starts at 0: make the product term show
        encoder.attention is not None and encoder.attention.gamma.copy_(
            torch.tensor([0.7, 1.3, 0.4])
        )
    return encoder


@pytest.mark.parametrize("name", sorted(CIUBM_CONFIGS))
def test_ciubm_equals_the_naive_reference(name: str) -> None:
    encoder = build_ciubm(CIUBM_CONFIGS[name])
    query, history = make_inputs([0, 1, 3, 12, 30], seed=2)
    history.item_ids[5] = 3  # a behavior without content
    with torch.no_grad():
        out = encoder(query, history)
        for s in range(5):
            expected = naive_ciubm(encoder, query, history, s)
            torch.testing.assert_close(out[s], expected, atol=1e-5, rtol=1e-4)


@settings(max_examples=10, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 20), min_size=1, max_size=4),
    name=st.sampled_from(sorted(CIUBM_CONFIGS)),
    seed=st.integers(0, 2**16),
)
def test_ciubm_equals_the_naive_reference_on_random_inputs(
    lengths: list[int], name: str, seed: int
) -> None:
    encoder = build_ciubm(CIUBM_CONFIGS[name], seed)
    query, history = make_inputs(lengths, seed)
    with torch.no_grad():
        out = encoder(query, history)
        for s in range(len(lengths)):
            torch.testing.assert_close(
                out[s], naive_ciubm(encoder, query, history, s), atol=1e-5, rtol=1e-4
            )


def test_ciubm_attention_reads_only_the_content_top_k() -> None:
    encoder = build_ciubm(CiUBMConfig(top_k=4, use_histogram=False))
    query, history = make_inputs([25], seed=4)
    table = encoder.content
    sim = F.cosine_similarity(table[history.item_ids], table[query.item_ids[0]].unsqueeze(0))
    order = torch.argsort(sim, descending=True)
    kept, dropped = order[:4], order[4:]
    with torch.no_grad():
        base = encoder(query, history)
        history.embeddings[dropped] += torch.randn(len(dropped), D) * 3
        torch.testing.assert_close(encoder(query, history), base)
        history.embeddings[kept[-1]] += torch.randn(D) * 3
        assert not torch.allclose(encoder(query, history), base)
