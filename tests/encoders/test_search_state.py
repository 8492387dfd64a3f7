"""SIMHard's and ETA's incremental serving states equal recomputing from the whole history."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from components.encoders.base import take_history_rows
from components.encoders.eta import ETA, ETAConfig
from components.encoders.example_inputs import random_history, random_query
from components.encoders.search_state import (
    SearchServingState,
    append_search_events,
    build_search_state,
    score_search_state,
)
from components.encoders.sim import SIMConfig, SIMHard

from .inputs import SPEC


def _encoder(name: str) -> SIMHard | ETA:
    torch.manual_seed(0)
    if name == "ETA":
        return ETA(SPEC, ETAConfig(top_k=3)).eval()
    return SIMHard(SPEC, SIMConfig(top_k=3, search_key=name.split("-")[1])).eval()


@settings(max_examples=15, deadline=None)
@given(
    name=st.sampled_from(["SIMHard-category", "SIMHard-group", "ETA"]),
    length=st.integers(0, 80),
    cuts=st.lists(st.integers(0, 80), max_size=3),
    seed=st.integers(0, 10_000),
)
def test_appends_equal_recompute(name: str, length: int, cuts: list[int], seed: int) -> None:
    enc = _encoder(name)
    log = random_history(SPEC, [length], seed=seed, num_categories=4)
    gen = torch.Generator().manual_seed(seed)
    log = dataclasses.replace(log, group_ids=torch.randint(0, 4, (length,), generator=gen))

    def rows(lo: int, hi: int):  # noqa: ANN202
        return take_history_rows(log, slice(lo, hi), torch.tensor([hi - lo]))

    points = sorted({min(c, length) for c in cuts} | {length})
    state = build_search_state(enc, rows(0, points[0]))
    done = points[0]
    cands = random_query(SPEC, 1, candidates=7, seed=seed, num_categories=4)
    cands = dataclasses.replace(cands, group_ids=torch.randint(0, 4, (1, 7), generator=gen))
    for point in points[1:] or [length]:
        state = append_search_events(enc, state, rows(done, point))
        done = point
        want = enc.forward_candidates(cands, rows(0, done))[0]
        torch.testing.assert_close(score_search_state(enc, state, cands), want, atol=1e-5, rtol=0)
    again = SearchServingState.from_dict(state.to_dict())
    torch.testing.assert_close(score_search_state(enc, again, cands), want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["SIMHard-category", "ETA"])
def test_new_behaviors_change_scores(name: str) -> None:
    enc = _encoder(name)
    log = random_history(SPEC, [40], seed=1, num_categories=3)
    cands = random_query(SPEC, 1, candidates=5, seed=2, num_categories=3)
    state = build_search_state(enc, take_history_rows(log, slice(0, 20), torch.tensor([20])))
    before = score_search_state(enc, state, cands)
    state = append_search_events(
        enc, state, take_history_rows(log, slice(20, 40), torch.tensor([20]))
    )
    assert not torch.allclose(before, score_search_state(enc, state, cands), atol=1e-4)


@pytest.mark.parametrize("name", ["SIMHard-category", "ETA"])
def test_state_history_is_a_contract_valid_one_user_history(name: str) -> None:
    """What the ESU reads from a state: one user of R retained rows, int64 ids, no numeric
    fields; the embeddings and ages are the retained rows'."""
    enc = _encoder(name)
    log = random_history(SPEC, [30], seed=4, num_categories=3)
    state = build_search_state(enc, log)
    history = state.history()
    r = state.age.numel()
    assert history.lengths.tolist() == [r] and history.offsets.tolist() == [0, r]
    for field in ("item_ids", "category_ids", "group_ids", "behavior_ids"):
        ids = getattr(history, field)
        assert ids.dtype == torch.int64 and ids.shape == (r,), field
    assert history.numeric.shape == (r, 0) and history.numeric.dtype == torch.float32
    assert history.embeddings is state.embeddings and history.age is state.age
    assert history.embedding_rows is None


@pytest.mark.parametrize("name", ["SIMHard-category", "ETA"])
def test_states_refuse_several_users_or_planned_lookups(name: str) -> None:
    enc = _encoder(name)
    message = "^a serving state holds one user with one embedding per behavior$"
    two_users = random_history(SPEC, [3, 2], seed=5)
    with pytest.raises(ValueError, match=message):
        build_search_state(enc, two_users)
    one = random_history(SPEC, [4], seed=5)
    planned = dataclasses.replace(one, embedding_rows=torch.arange(4))
    with pytest.raises(ValueError, match=message):
        build_search_state(enc, planned)
    state = build_search_state(enc, one)
    with pytest.raises(ValueError, match=message):
        append_search_events(enc, state, planned)
