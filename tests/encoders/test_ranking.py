"""Scoring C candidates per user at once equals scoring each candidate alone.

Encoder level: ``forward_candidates`` (DMGIN's cached user state; the others' repeated
histories) against ``forward`` per candidate. Model level: ``rank_candidates`` against the
model's forward on the batch whose candidate is column c.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from components.encoders.base import EncoderSpec, History, Query, repeat_history
from components.encoders.example_inputs import random_history, random_query
from components.encoders.registry import ENCODERS, build_encoder
from components.model import LifelongCTRModel, ModelConfig, Vocab
from pipelines.data.batch import Batch, make_batch, random_batch

from .inputs import SMALL_WINDOWS

SPEC = EncoderSpec(embedding_dim=8, behavior_dim=4, num_behaviors=3, num_numeric=2, num_groups=6)
VOCAB = Vocab(users=20, items=60, categories=6, behaviors=3, num_numeric=2)


def _encoder(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    encoder = build_encoder(name, SPEC, SMALL_WINDOWS[name])
    if name == "CiUBM":
        encoder.load_content(torch.nn.functional.normalize(torch.randn(60, 5), dim=1))
    return encoder.eval()


def _column(grid: Query, c: int) -> Query:
    return Query(
        grid.embeddings[:, c], grid.item_ids[:, c], grid.category_ids[:, c], grid.group_ids[:, c]
    )


def test_small_windows_cover_every_encoder() -> None:
    assert set(SMALL_WINDOWS) == set(ENCODERS)


@pytest.mark.parametrize("name", sorted(ENCODERS))
@settings(max_examples=6, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 40), min_size=1, max_size=4),
    candidates=st.integers(1, 5),
    seed=st.integers(0, 50),
)
def test_forward_candidates_equals_forward_per_candidate(
    name: str, lengths: list[int], candidates: int, seed: int
) -> None:
    encoder = _encoder(name)
    vocab = {"num_items": 60, "num_categories": 6}
    history = random_history(SPEC, lengths, seed=seed, **vocab)
    grid = random_query(SPEC, len(lengths), candidates=candidates, seed=seed + 1, **vocab)
    with torch.no_grad():
        together = encoder.forward_candidates(grid, history)
        assert together.shape == (len(lengths), candidates, encoder.output_dim)
        for c in range(candidates):
            alone = encoder(_column(grid, c), history)
            torch.testing.assert_close(together[:, c], alone, atol=1e-5, rtol=1e-4)


def test_repeat_history_pairs_each_copy_with_its_user() -> None:
    history = random_history(SPEC, [2, 0, 3], seed=4)
    repeated = repeat_history(history, 2)
    assert repeated.lengths.tolist() == [2, 2, 0, 0, 3, 3]
    assert isinstance(repeated, History)
    expected_rows = [0, 1, 0, 1, 2, 3, 4, 2, 3, 4]
    assert torch.equal(repeated.embeddings, history.embeddings[expected_rows])
    assert torch.equal(repeated.age, history.age[expected_rows])
    assert torch.equal(repeated.numeric, history.numeric[expected_rows])


def _with_candidate(batch: Batch, items: torch.Tensor, categories: torch.Tensor) -> Batch:
    b = batch.batch_size
    ids = batch.item_ids
    return make_batch(
        user=batch.user_ids,
        item=items,
        category=categories,
        labels=batch.labels,
        timestamps=batch.timestamps,
        history_lengths=batch.history_lengths,
        history_item=ids[0, b:],
        history_category=ids[1, b:],
        history_behavior=ids[2, b:],
        history_age=batch.history_age,
        history_numeric=batch.history_numeric,
    )


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_rank_candidates_equals_the_model_per_candidate(name: str) -> None:
    torch.manual_seed(0)
    content = None
    if name == "CiUBM":
        content = torch.nn.functional.normalize(torch.randn(VOCAB.items, 5), dim=1)
    config = ModelConfig(encoder=name, embedding_dim=8, behavior_dim=4, over_arch=[16])
    model = LifelongCTRModel(config, VOCAB, content_embeddings=content).eval()
    batch = random_batch(
        [35, 0, 12], users=20, items=60, categories=6, behaviors=3, num_numeric=2, seed=3
    )
    generator = torch.Generator().manual_seed(5)
    items = torch.randint(1, 60, (3, 4), generator=generator)
    categories = torch.randint(1, 6, (3, 4), generator=generator)
    with torch.no_grad():
        ranked = model.rank_candidates(batch, items, categories)
        assert ranked.shape == (3, 4)
        for c in range(4):
            alone = model(_with_candidate(batch, items[:, c], categories[:, c])).logits
            torch.testing.assert_close(ranked[:, c], alone, atol=1e-5, rtol=1e-4)
    assert not torch.equal(ranked[:, 0], ranked[:, 1]), "candidates must be told apart"


def test_rank_candidates_rejects_mismatched_shapes() -> None:
    model = LifelongCTRModel(ModelConfig(encoder="DIN", embedding_dim=8), VOCAB)
    batch = random_batch([3, 4], users=20, items=60, categories=6, behaviors=3, num_numeric=2)
    with pytest.raises(ValueError, match=r"\[B, C\]"):
        model.rank_candidates(batch, torch.ones(2, 3, dtype=torch.int64), torch.ones(2, 4))
    with pytest.raises(ValueError, match="3 rows of candidates for a batch of 2"):
        ones = torch.ones(3, 2, dtype=torch.int64)
        model.rank_candidates(batch, ones, ones)


@pytest.mark.parametrize(
    "fields",
    [{"histogram_over_topk": True}, {"use_histogram": False}, {"use_attention": False}],
)
def test_ciubm_variants_rank_like_their_forward(fields: dict) -> None:
    torch.manual_seed(0)
    encoder = build_encoder("CiUBM", SPEC, {"top_k": 3, **fields})
    encoder.load_content(torch.nn.functional.normalize(torch.randn(60, 5), dim=1))
    encoder.eval()
    vocab = {"num_items": 60, "num_categories": 6}
    history = random_history(SPEC, [30, 0, 7, 18], seed=9, **vocab)
    grid = random_query(SPEC, 4, candidates=3, seed=10, **vocab)
    with torch.no_grad():
        together = encoder.forward_candidates(grid, history)
        for c in range(3):
            alone = encoder(_column(grid, c), history)
            torch.testing.assert_close(together[:, c], alone, atol=1e-5, rtol=1e-4)
