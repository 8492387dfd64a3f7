"""The random example inputs satisfy the encoder and batch contracts they claim to."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from components.encoders.base import EncoderSpec, History
from components.encoders.example_inputs import random_history, random_query
from components.model import LifelongCTRModel, ModelConfig, Vocab
from pipelines.data.batch import random_batch

lengths_strategy = st.lists(st.integers(0, 12), min_size=1, max_size=6)


def assert_ages_decrease_per_history(age: torch.Tensor, lengths: list[int]) -> None:
    for chunk in torch.split(age, lengths):
        assert bool((chunk > 0).all())
        assert bool((chunk[1:] <= chunk[:-1]).all()), "oldest behavior must come first"


@settings(max_examples=40, deadline=None)
@given(
    lengths=lengths_strategy,
    num_groups=st.integers(1, 6),
    num_behaviors=st.integers(1, 4),
    seed=st.integers(0, 100),
)
def test_random_history_follows_the_contract(
    lengths: list[int], num_groups: int, num_behaviors: int, seed: int
) -> None:
    spec = EncoderSpec(8, 3, num_behaviors=num_behaviors, num_numeric=2, num_groups=num_groups)
    history = random_history(spec, lengths, num_items=9, seed=seed)
    n = sum(lengths)
    assert isinstance(history, History)
    assert history.lengths.tolist() == lengths
    assert history.offsets.tolist() == [sum(lengths[:i]) for i in range(len(lengths) + 1)]
    assert history.embeddings.shape == (n, 8) and history.behavior_embeddings.shape == (n, 3)
    assert history.numeric.shape == (n, 2) and history.age.shape == (n,)
    for ids, vocab in [
        (history.item_ids, 9),
        (history.group_ids, num_groups),
        (history.behavior_ids, num_behaviors),
    ]:
        assert ids.dtype == torch.int64
        if vocab > 1:
            assert bool(((ids >= 1) & (ids < vocab)).all())
        else:
            assert bool((ids == 0).all()), "a padding-only vocabulary has only id 0"
    assert_ages_decrease_per_history(history.age, lengths)


def test_same_seed_same_inputs_and_global_rng_untouched() -> None:
    spec = EncoderSpec(4, num_groups=5)
    torch.manual_seed(3)
    expected_next = torch.rand(1)
    torch.manual_seed(3)
    first = random_history(spec, [3, 2], seed=11)
    second = random_history(spec, [3, 2], seed=11)
    assert torch.rand(1).item() == expected_next.item()
    assert torch.equal(first.embeddings, second.embeddings)
    assert torch.equal(first.group_ids, second.group_ids)
    assert not torch.equal(first.embeddings, random_history(spec, [3, 2], seed=12).embeddings)


def test_random_query_shapes_and_grad() -> None:
    spec = EncoderSpec(6, num_groups=4)
    one = random_query(spec, 3, requires_grad=True)
    assert one.embeddings.shape == (3, 6) and one.embeddings.requires_grad
    assert one.group_ids.shape == one.item_ids.shape == one.category_ids.shape == (3,)
    grid = random_query(spec, 3, candidates=5)
    assert grid.embeddings.shape == (3, 5, 6) and not grid.embeddings.requires_grad
    assert grid.group_ids.shape == (3, 5) and bool((grid.group_ids >= 1).all())


def test_negative_length_is_rejected() -> None:
    with pytest.raises(ValueError, match="-1"):
        random_history(EncoderSpec(4), [2, -1])


@settings(max_examples=15, deadline=None)
@given(lengths=lengths_strategy, seed=st.integers(0, 100))
def test_random_batch_is_a_valid_model_input(lengths: list[int], seed: int) -> None:
    vocab = Vocab(users=10, items=30, categories=4, behaviors=3, num_numeric=2)
    batch = random_batch(
        lengths, users=10, items=30, categories=4, behaviors=3, num_numeric=2, seed=seed
    )
    b, n = len(lengths), sum(lengths)
    assert batch.items.stride() == b + n
    assert batch.history_numeric.shape == (n, 2)
    assert set(batch.labels.tolist()) <= {0.0, 1.0}
    values = batch.items.to_dict()
    assert bool((values["item_id"].values() < 30).all())
    assert bool((values["category_id"].values() < 4).all())
    assert bool((values["behavior_id"].values()[:b] == 0).all()), "candidates carry no behavior"
    assert bool((values["behavior_id"].values()[b:] >= 1).all())
    assert_ages_decrease_per_history(batch.history_age, lengths)
    logits = LifelongCTRModel(ModelConfig(encoder="DIN", embedding_dim=8), vocab)(batch).logits
    assert logits.shape == (b,) and bool(torch.isfinite(logits).all())


def test_random_batch_rejects_a_negative_length() -> None:
    with pytest.raises(ValueError, match="history_lengths must be >= 0"):
        random_batch([3, -2], users=5, items=9, categories=3, behaviors=2)


FULL_SPEC = EncoderSpec(6, 3, num_behaviors=4, num_numeric=2, num_groups=5)


def _fields(obj: object) -> dict[str, torch.Tensor]:
    return {k: v for k, v in vars(obj).items() if isinstance(v, torch.Tensor)}


def test_every_field_comes_from_the_private_generator() -> None:
    """Whatever the global seed, one seed gives the same values in every field, and the global
    RNG is where it was."""
    outputs = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        expected_next = torch.rand(1)
        torch.manual_seed(global_seed)
        history = random_history(FULL_SPEC, [4, 0, 3], seed=5)
        query = random_query(FULL_SPEC, 3, seed=6)
        grid = random_query(FULL_SPEC, 2, candidates=3, seed=6)
        assert torch.rand(1).item() == expected_next.item()
        outputs.append(
            {
                **_fields(history),
                **{f"q_{k}": v for k, v in _fields(query).items()},
                **{f"g_{k}": v for k, v in _fields(grid).items()},
            }
        )
    assert outputs[0].keys() == outputs[1].keys()
    for name, value in outputs[0].items():
        assert torch.equal(value, outputs[1][name]), name


def test_defaults() -> None:
    """seed 0 / 1, no gradient, 1,000 items and 20 categories (the largest ids are drawn)."""
    for made, explicit in (
        (random_history(FULL_SPEC, [3, 2]), random_history(FULL_SPEC, [3, 2], seed=0)),
        (random_query(FULL_SPEC, 4), random_query(FULL_SPEC, 4, seed=1)),
    ):
        assert not made.embeddings.requires_grad
        for name, value in _fields(made).items():
            assert torch.equal(value, _fields(explicit)[name]), name
    history = random_history(FULL_SPEC, [20_000])
    query = random_query(FULL_SPEC, 20_000)
    for ids, vocab in (
        (history.item_ids, 1000),
        (history.category_ids, 20),
        (query.item_ids, 1000),
        (query.category_ids, 20),
    ):
        assert ids.dtype == torch.int64 and (int(ids.min()), int(ids.max())) == (1, vocab - 1)


def test_ages_span_seconds_to_months_oldest_first() -> None:
    """Ages are 1 s plus up to 10^7 s (about 4 months), from the generator's sorted draws."""
    history = random_history(FULL_SPEC, [5, 3], seed=9)
    generator = torch.Generator().manual_seed(9)
    draws = [torch.sort(torch.rand(k, generator=generator), descending=True).values for k in (5, 3)]
    torch.testing.assert_close(history.age, 1.0 + torch.cat(draws) * 1e7, rtol=0, atol=0)
    long = random_history(FULL_SPEC, [2000]).age
    assert float(long.min()) > 1.0 and 9e6 < float(long.max()) <= 1e7 + 1


def test_an_empty_batch_has_int64_lengths() -> None:
    history = random_history(FULL_SPEC, [])
    assert history.lengths.dtype == torch.int64 and history.offsets.tolist() == [0]
    assert history.embeddings.shape == (0, 6)
