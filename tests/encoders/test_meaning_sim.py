"""SIMHard, SIMSoft and ETA: retrieval inside the encoder equals a brute-force search written
here, and the exact search unit equals a naive attention over exactly the selected rows.

Each reference picks the K rows with plain Python (same key and most recent / top inner
product / smallest Hamming distance, ties to the more recent row), builds their attention keys
one row at a time (embedding, time-interval bucket computed by hand, behavior embedding) and
calls the encoder's attention on exactly those rows with no padding.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from components import (
    ETA,
    EncoderSpec,
    ETAConfig,
    History,
    Query,
    SIMConfig,
    SIMHard,
    SIMSoft,
    random_history,
)

D, DB, NUM_CATEGORIES = 8, 3, 4
SPEC = EncoderSpec(D, DB, num_behaviors=3, num_numeric=1, num_groups=5)
K = 3


def make_inputs(lengths: list[int], seed: int = 0) -> tuple[Query, History]:
    history = random_history(SPEC, lengths, num_items=40, num_categories=NUM_CATEGORIES, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    b = len(lengths)
    query = Query(
        embeddings=torch.randn(b, D, generator=g),
        item_ids=torch.randint(1, 40, (b,), generator=g),
        category_ids=torch.randint(1, NUM_CATEGORIES, (b,), generator=g),
        group_ids=torch.randint(1, SPEC.num_groups, (b,), generator=g),
    )
    return query, history


def naive_age_bucket(age_seconds: float, num_buckets: int) -> int:
    days = max(age_seconds, 0.0) / 86400.0
    bucket = 0 if days < 1.0 else int(math.floor(math.log2(days))) + 1
    return min(bucket, num_buckets - 1)


def naive_esu(encoder, query: Query, history: History, s: int, rows: list[int]) -> torch.Tensor:
    esu = encoder.esu
    if not rows:
        return torch.zeros(esu.output_dim)
    keys = []
    for r in rows:
        parts = [history.embeddings[r]]
        if esu.time is not None:
            bucket = naive_age_bucket(float(history.age[r]), esu.time.num_buckets)
            parts.append(esu.time.embedding.weight[bucket])
        parts.append(history.behavior_embeddings[r])
        keys.append(torch.cat(parts))
    full = torch.ones(1, len(rows), dtype=torch.bool)
    return esu.attention(query.embeddings[s : s + 1], torch.stack(keys).unsqueeze(0), full)[0]


def sample_rows(history: History, s: int) -> range:
    return range(int(history.offsets[s]), int(history.offsets[s + 1]))


def naive_hard(history: History, query: Query, s: int, key: str, k: int) -> list[int]:
    keys = history.category_ids if key == "category" else history.group_ids
    wanted = int((query.category_ids if key == "category" else query.group_ids)[s])
    return [r for r in sample_rows(history, s) if int(keys[r]) == wanted][-k:]


def naive_top(score: dict[int, float], k: int) -> list[int]:
    """The k highest scores, ties to the more recent row, returned in time order."""
    return sorted(sorted(score, key=lambda r: (-score[r], -r))[:k])


def naive_soft(encoder: SIMSoft, history: History, query: Query, s: int, k: int) -> list[int]:
    wq = encoder.project_query.weight
    wb = encoder.project_behavior.weight
    q = wq @ query.embeddings[s]
    score = {r: float((wb @ history.embeddings[r]) @ q) for r in sample_rows(history, s)}
    return naive_top(score, k)


def naive_eta(encoder: ETA, history: History, query: Query, s: int, k: int) -> list[int]:
    planes = encoder.planes

    def bits(e: torch.Tensor) -> list[bool]:
        return [float(e @ planes[:, j]) > 0 for j in range(planes.shape[1])]

    q = bits(query.embeddings[s])
    score = {
        r: -float(sum(a != b for a, b in zip(bits(history.embeddings[r]), q)))
        for r in sample_rows(history, s)
    }
    return naive_top(score, k)


def build(name: str, seed: int = 0, **config):
    torch.manual_seed(seed)
    if name == "ETA":
        return ETA(SPEC, ETAConfig(top_k=K, **config)).eval()
    cls = SIMHard if name.startswith("SIMHard") else SIMSoft
    if name == "SIMHard-group":
        config["search_key"] = "group"
    return cls(SPEC, SIMConfig(top_k=K, **config)).eval()


def naive_rows(encoder, name: str, history: History, query: Query, s: int) -> list[int]:
    if name == "SIMHard":
        return naive_hard(history, query, s, "category", K)
    if name == "SIMHard-group":
        return naive_hard(history, query, s, "group", K)
    if name == "SIMSoft":
        return naive_soft(encoder, history, query, s, K)
    return naive_eta(encoder, history, query, s, K)


NAMES = ["SIMHard", "SIMHard-group", "SIMSoft", "ETA"]


def check(name: str, lengths: list[int], seed: int, **config) -> None:
    encoder = build(name, seed, **config)
    query, history = make_inputs(lengths, seed)
    with torch.no_grad():
        out = encoder(query, history)
        for s in range(len(lengths)):
            rows = naive_rows(encoder, name, history, query, s)
            expected = naive_esu(encoder, query, history, s, rows)
            torch.testing.assert_close(out[s], expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_encoder_equals_brute_force_search_then_naive_attention(name: str) -> None:
    check(name, [0, 1, 2, 9, 30], seed=2)


@pytest.mark.parametrize("name", NAMES)
def test_without_time_embedding(name: str) -> None:
    check(name, [5, 17], seed=3, time_dim=0)


@settings(max_examples=15, deadline=None)
@given(
    name=st.sampled_from(NAMES),
    lengths=st.lists(st.integers(0, 20), min_size=1, max_size=4),
    seed=st.integers(0, 2**16),
)
def test_encoder_equals_brute_force_on_random_inputs(
    name: str, lengths: list[int], seed: int
) -> None:
    check(name, lengths, seed)


def test_eta_keeps_the_nearest_fingerprints_not_the_farthest() -> None:
    """Four behaviors share the candidate's embedding (distance 0), the rest are its negation
    (every bit differs): the K = 3 kept are the three newest copies, so the negated ones and the
    oldest copy can change freely without moving the output, and a kept copy cannot."""
    encoder = build("ETA")
    query, history = make_inputs([10])
    near = [1, 4, 6, 8]
    with torch.no_grad():
        history.embeddings[:] = -query.embeddings[0] * 2.0
        history.embeddings[near] = query.embeddings[0] * torch.tensor([[1.0], [2.0], [0.5], [3.0]])
        base = encoder(query, history)
        torch.testing.assert_close(base[0], naive_esu(encoder, query, history, 0, near[1:]))
        history.behavior_embeddings[[0, 2, 3, 5, 7, 9, 1]] += 5.0
        torch.testing.assert_close(encoder(query, history), base)
        history.behavior_embeddings[8] += 5.0
        assert not torch.allclose(encoder(query, history), base)


@pytest.mark.parametrize("name", ["SIMHard", "SIMHard-group"])
def test_hard_search_window(name: str) -> None:
    """A same-key behavior older than the K newest and any other-key behavior change nothing;
    one of the K newest same-key ones does; an age change moves its time bucket."""
    encoder = build(name)
    query, history = make_inputs([40], seed=5)
    rows = naive_hard(history, query, 0, "group" if name.endswith("group") else "category", 40)
    assert len(rows) > K
    kept = set(rows[-K:])
    others = [r for r in range(40) if r not in kept]
    with torch.no_grad():
        base = encoder(query, history)
        history.embeddings[others] += torch.randn(len(others), D) * 3
        history.age[others] *= 100.0
        torch.testing.assert_close(encoder(query, history), base)
        history.age[rows[-1]] = 86400.0 * 300
        aged = encoder(query, history)
        assert not torch.allclose(aged, base)
        history.embeddings[rows[-K]] += torch.randn(D) * 3
        assert not torch.allclose(encoder(query, history), aged)


def test_sim_soft_auxiliary_logit_equals_a_naive_pooling() -> None:
    encoder = build("SIMSoft", aux_max_len=6)
    query, history = make_inputs([0, 4, 15], seed=6)
    with torch.no_grad():
        _, aux = encoder.forward_with_aux(query, history)
        wq, wb = encoder.project_query.weight, encoder.project_behavior.weight
        for s in range(3):
            q = query.embeddings[s]
            pooled = torch.zeros(D)
            for r in list(sample_rows(history, s))[-6:]:
                e = history.embeddings[r]
                pooled += float((wb @ e) @ (wq @ q)) * e
            expected = encoder.aux_mlp(torch.cat([pooled, q]))[0]
            torch.testing.assert_close(aux["sim_soft_gsu"][s], expected, atol=1e-5, rtol=1e-4)


def test_padded_users_change_nothing() -> None:
    for name in NAMES:
        encoder = build(name)
        query, history = make_inputs([12, 0, 7], seed=7)
        with torch.no_grad():
            base = encoder(query, history)
            lengths = [0, 12, 0, 7, 0]
            q2, h2 = make_inputs(lengths, seed=8)
            for f in dataclasses.fields(Query):
                getattr(q2, f.name)[[1, 2, 3]] = getattr(query, f.name)
            for f in ("embeddings", "item_ids", "category_ids", "group_ids", "age"):
                getattr(h2, f)[:] = getattr(history, f)
            h2.behavior_embeddings[:] = history.behavior_embeddings
            out = encoder(q2, h2)
        torch.testing.assert_close(out[[1, 2, 3]], base, atol=1e-6, rtol=1e-5)


def test_group_zero_finds_nothing_in_a_group_search() -> None:
    encoder = build("SIMHard-group")
    query, history = make_inputs([10, 10], seed=9)
    history.group_ids[:] = 0
    history.group_ids[10:15] = 2
    query.group_ids[:] = torch.tensor([0, 2])
    with torch.no_grad():
        out = encoder(query, history)
        torch.testing.assert_close(out[0], torch.zeros_like(out[0]))
        assert not torch.allclose(out[1], torch.zeros_like(out[1]))
        rows = encoder.history_rows(query, history)
        assert sorted(rows.tolist()) == [12, 13, 14]
        grid = Query(*(getattr(query, f.name).unsqueeze(1) for f in dataclasses.fields(Query)))
        torch.testing.assert_close(encoder.forward_candidates(grid, history)[:, 0], out)
