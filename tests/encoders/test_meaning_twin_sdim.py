"""TWIN and SDIM mean what their papers say, checked against brute force written here.

TWIN: every behavior is scored by the ESU's own multi-head logit (item keys plus a cross-feature
bias per head); the K with the largest head-mean logit are kept and the ESU softmaxes exactly
those logits. SDIM: per hash, the behaviors whose SimHash bucket equals the candidate's are
summed and L2-normalised, the hashes averaged; nothing else reads the history.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from components import SDIM, TWIN, EncoderSpec, History, Query, SDIMConfig, TWINConfig
from components.layers.time_buckets import age_buckets

from .inputs import make_inputs, select

K = 3
SPEC_KW = {"embedding_dim": 16, "behavior_dim": 4, "num_behaviors": 4, "num_numeric": 2}


def _twin(time_dim: int = 8) -> TWIN:
    torch.manual_seed(0)
    from .inputs import SPEC

    return TWIN(SPEC, TWINConfig(top_k=K, time_dim=time_dim)).eval()


def naive_twin(encoder: TWIN, query: Query, history: History, s: int) -> torch.Tensor:
    h, d = encoder.config.num_heads, encoder.head_dim
    rows = list(range(int(history.offsets[s]), int(history.offsets[s + 1])))
    if not rows:
        return torch.zeros(encoder.output_dim)
    q = query.embeddings[s]
    logits, values = {}, {}
    for r in rows:
        cross = []
        if encoder.time is not None:
            bucket = int(age_buckets(history.age[r : r + 1], encoder.time.num_buckets))
            cross.append(encoder.time.embedding.weight[bucket])
        cross += [history.behavior_embeddings[r], history.numeric[r]]
        beta = encoder.cross(torch.cat(cross))
        per_head = []
        for head in range(h):
            wq = encoder.q.weight[head * d : (head + 1) * d]
            wk = encoder.k.weight[head * d : (head + 1) * d]
            per_head.append(float((wq @ q) @ (wk @ history.embeddings[r])) / math.sqrt(d))
        logits[r] = [per_head[i] + float(beta[i]) for i in range(h)]
        values[r] = encoder.v.weight @ history.embeddings[r]
    chosen = sorted(rows, key=lambda r: (-sum(logits[r]) / h, -r))[:K]
    pooled = []
    for head in range(h):
        weights = torch.softmax(torch.tensor([logits[r][head] for r in chosen]), dim=0)
        pooled.append(
            sum(w * values[r][head * d : (head + 1) * d] for w, r in zip(weights, chosen))
        )
    return encoder.out(torch.cat(pooled))


@settings(max_examples=12, deadline=None)
@given(lengths=st.lists(st.integers(0, 12), min_size=1, max_size=4), seed=st.integers(0, 999))
def test_twin_equals_its_brute_force(lengths: list[int], seed: int) -> None:
    encoder = _twin()
    query, history = make_inputs(lengths, seed)
    with torch.no_grad():
        out = encoder(query, history)
        for s in range(len(lengths)):
            torch.testing.assert_close(
                out[s], naive_twin(encoder, query, history, s), atol=1e-5, rtol=1e-4
            )


def test_twin_gsu_keeps_the_rows_the_esu_weighs_most() -> None:
    """Consistency: the kept rows are the top K of the ESU's own logits, so the GSU's choice
    is what the ESU would attend to most."""
    encoder = _twin()
    query, history = make_inputs([20, 9], seed=5)
    with torch.no_grad():
        index, mask = encoder.gsu(query, history)
        for s in range(2):
            rows = range(int(history.offsets[s]), int(history.offsets[s + 1]))
            keys, _ = encoder._item_side(history)
            q = encoder.q(query.embeddings[s : s + 1]).view(1, encoder.config.num_heads, -1)
            bias = encoder.cross_bias(history)
            score = {r: float(encoder.logits(q[0], keys[r], bias[r]).mean()) for r in rows}
            want = sorted(sorted(rows, key=lambda r: (-score[r], -r))[:K])
            assert index[s][mask[s]].tolist() == want


def test_twin_cross_features_move_the_logits() -> None:
    """The user-item cross features (age, behavior type, numeric fields) reach the output
    through the bias, for the rows the GSU keeps."""
    encoder = _twin()
    query, history = make_inputs([3], seed=1)  # K = 3: every row is kept
    with torch.no_grad():
        base = encoder(query, history)
        history.numeric[1] += 3.0  # one row's bias moves (all rows at once would not matter)
        assert not torch.allclose(encoder(query, history), base)
        history.numeric[1] -= 3.0
        torch.testing.assert_close(encoder(query, history), base)
        history.age[1] = 86400.0 * 1000  # another time-interval bucket
        assert not torch.allclose(encoder(query, history), base)


def test_twin_a_row_outside_the_top_k_changes_nothing() -> None:
    encoder = _twin()
    query, history = make_inputs([12], seed=2)
    with torch.no_grad():
        index, mask = encoder.gsu(query, history)
        kept = index[0][mask[0]].tolist()
        dropped = next(r for r in range(12) if r not in kept)
        base = encoder(query, history)
        # move the dropped row's embedding against the gradient of its GSU score: it falls
        # further behind, so it stays out and the output must not move
        h = encoder.config.num_heads
        q = encoder.q(query.embeddings[0]).view(h, -1)
        direction = torch.einsum("hd,hde->e", q, encoder.k.weight.view(h, -1, q.shape[1] * h))
        history.embeddings[dropped] -= 10.0 * direction / direction.norm()
        assert encoder.gsu(query, history)[0][0][mask[0]].tolist() == kept
        torch.testing.assert_close(encoder(query, history), base)
        history.embeddings[kept[0]] += 1.0
        assert not torch.allclose(encoder(query, history), base)


@pytest.mark.parametrize("name", ["TWIN", "SDIM"])
def test_a_user_alone_equals_the_user_in_a_batch(name: str) -> None:
    from .inputs import SPEC

    torch.manual_seed(0)
    encoder = (TWIN(SPEC, TWINConfig(top_k=K)) if name == "TWIN" else SDIM(SPEC)).eval()
    query, history = make_inputs([7, 0, 15, 3], seed=9)
    with torch.no_grad():
        together = encoder(query, history)
        for s in range(4):
            torch.testing.assert_close(together[s : s + 1], encoder(*select(query, history, s)))
        assert together[1].abs().max() == 0  # no history, no interest


def _sdim(hashes: int = 6, bits: int = 2) -> SDIM:
    from .inputs import SPEC

    return SDIM(SPEC, SDIMConfig(num_hashes=hashes, hash_bits=bits, hash_seed=3))


def naive_code(encoder: SDIM, embedding: torch.Tensor, j: int) -> int:
    bits = encoder.config.hash_bits
    return sum(2**t for t in range(bits) if float(embedding @ encoder.planes[:, j * bits + t]) > 0)


def naive_sdim(encoder: SDIM, query: Query, history: History, s: int) -> torch.Tensor:
    rows = range(int(history.offsets[s]), int(history.offsets[s + 1]))
    per_hash = []
    for j in range(encoder.config.num_hashes):
        wanted = naive_code(encoder, query.embeddings[s], j)
        total = torch.zeros(encoder.output_dim)
        for r in rows:
            if naive_code(encoder, history.embeddings[r], j) == wanted:
                total = total + torch.cat([history.embeddings[r], history.behavior_embeddings[r]])
        norm = float(total.norm())
        per_hash.append(total / norm if norm > 0 else total)
    return torch.stack(per_hash).mean(dim=0)


@settings(max_examples=12, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 10), min_size=1, max_size=3),
    bits=st.integers(1, 3),
    seed=st.integers(0, 999),
)
def test_sdim_equals_its_brute_force(lengths: list[int], bits: int, seed: int) -> None:
    encoder = _sdim(bits=bits)
    query, history = make_inputs(lengths, seed)
    with torch.no_grad():
        out = encoder(query, history)
        for s in range(len(lengths)):
            torch.testing.assert_close(
                out[s], naive_sdim(encoder, query, history, s), atol=1e-5, rtol=1e-4
            )


def test_sdim_reads_only_colliding_behaviors() -> None:
    """A behavior that shares no bucket with the candidate gets no gradient and changes nothing;
    one that collides under some hash does."""
    encoder = _sdim(hashes=3, bits=3)
    query, history = make_inputs([30], seed=4)
    codes_q = [naive_code(encoder, query.embeddings[0].detach(), j) for j in range(3)]
    collides = [
        any(naive_code(encoder, history.embeddings[r].detach(), j) == codes_q[j] for j in range(3))
        for r in range(30)
    ]
    assert any(collides) and not all(collides)
    encoder(query, history).sum().backward()
    grads = history.embeddings.grad.abs().sum(dim=1)
    for r in range(30):
        assert (grads[r] > 0) == collides[r], r


def test_sdim_has_no_trained_parameters_and_a_fixed_hash() -> None:
    encoder = _sdim()
    assert list(encoder.parameters()) == []
    again = _sdim()
    assert torch.equal(encoder.planes, again.planes)  # the seed fixes the hyperplanes
    assert not torch.equal(
        encoder.planes, SDIM(EncoderSpec(**SPEC_KW), SDIMConfig(hash_seed=4)).planes[:, :12]
    )
