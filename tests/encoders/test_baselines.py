"""DIN, DINFull, SIMHard, SIMSoft, ETA: shapes, padding invariance, retrieval semantics, gradients."""

from __future__ import annotations

import pytest
import torch

from components.encoders.registry import build_encoder

from .inputs import SPEC, make_inputs, select

NAMES = ["DIN", "DINFull", "SIMHard", "SIMSoft", "ETA"]
SMALL = {
    "DIN": {"max_len": 8},
    "DINFull": {},
    "SIMHard": {"top_k": 5},
    "SIMSoft": {"top_k": 5},
    "ETA": {"top_k": 5},
}


def build(name: str, **overrides):
    torch.manual_seed(0)
    return build_encoder(name, SPEC, {**SMALL[name], **overrides}).eval()


@pytest.mark.parametrize("name", NAMES)
def test_shapes_empty_histories_and_padding_invariance(name: str) -> None:
    encoder = build(name)
    query, history = make_inputs([0, 3, 20, 1, 0], seed=1)
    out = encoder(query, history)
    assert out.shape == (5, encoder.output_dim)
    assert torch.isfinite(out).all()
    for i in range(5):
        alone = encoder(*select(query, history, i))
        torch.testing.assert_close(alone[0], out[i], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_parameters_and_embeddings(name: str) -> None:
    encoder = build(name).train()
    query, history = make_inputs([12, 30, 7], seed=2, num_groups=3)
    interest, aux = encoder.forward_with_aux(query, history)
    loss = interest.pow(2).sum() + sum(a.pow(2).sum() for a in aux.values())
    loss.backward()
    missing = [
        n for n, p in encoder.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0
    ]
    assert not missing
    assert history.embeddings.grad is not None and history.embeddings.grad.abs().sum() > 0


def test_din_reads_only_the_most_recent_behaviors() -> None:
    encoder = build("DIN")  # max_len 8
    query, history = make_inputs([20], seed=3)
    base = encoder(query, history)
    history.embeddings.data[:12] += 3.0  # older than the last 8
    torch.testing.assert_close(encoder(query, history), base)
    history.embeddings.data[15] += 3.0
    assert not torch.allclose(encoder(query, history), base)


def test_sim_hard_attends_only_to_the_candidates_category() -> None:
    encoder = build("SIMHard", top_k=50)
    query, history = make_inputs([40], seed=4)
    history.category_ids[::2] = query.category_ids[0]
    base = encoder(query, history)
    other = history.category_ids != query.category_ids[0]
    history.embeddings.data[other] += 4.0
    torch.testing.assert_close(encoder(query, history), base)
    history.embeddings.data[~other] += 4.0
    assert not torch.allclose(encoder(query, history), base)


def test_sim_soft_returns_an_auxiliary_logit_per_sample() -> None:
    encoder = build("SIMSoft")
    query, history = make_inputs([5, 0, 9], seed=5)
    _, aux = encoder.forward_with_aux(query, history)
    assert set(aux) == {"sim_soft_gsu"} and aux["sim_soft_gsu"].shape == (3,)


def test_eta_keeps_the_k_nearest_fingerprints() -> None:
    encoder = build("ETA", top_k=3)
    query, history = make_inputs([30], seed=6)
    history.embeddings.data[7] = query.embeddings.data[0]  # Hamming distance 0: always kept
    base = encoder(query, history)
    history.embeddings.data[7] = -query.embeddings.data[0]  # now maximally far: dropped
    assert not torch.allclose(encoder(query, history), base)


@pytest.mark.parametrize("max_len", [3, 20, 100_000])
def test_dinfull_jagged_equals_the_padded_din(max_len: int) -> None:
    """DINFull pools the jagged rows directly; DIN pads to [B, T]: same weights, same result."""
    torch.manual_seed(0)
    query, history = make_inputs([7, 0, 19, 1], seed=4)
    full = build_encoder("DINFull", SPEC, {"max_len": max_len})
    padded = build_encoder("DIN", SPEC, {"max_len": max_len})
    padded.load_state_dict(full.state_dict())
    expected = padded(query, history)
    got = full(query, history)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    got.sum().backward()
    assert history.embeddings.grad is not None and query.embeddings.grad is not None
