"""DMGIN's incremental serving state equals recomputing from the whole history."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from components.encoders.base import History, take_history_rows
from components.encoders.dmgin import DMGIN, DMGINConfig
from components.encoders.dmgin_state import (
    DMGINServingState,
    append_dmgin_events,
    build_dmgin_state,
    score_dmgin_state,
)
from components.encoders.example_inputs import random_history, random_query

from .inputs import SPEC

SWITCHES = (
    "use_statistics",
    "use_intra_group_transformer",
    "use_group_embedding",
    "use_hstu",
    "use_target_group_attention",
    "use_target_group_statistics",
)
ITEMS = 6  # a small item vocabulary: candidates and behaviors share items


def _log(length: int, groups: int, no_group: float, seed: int) -> History:
    """One user's random log over ``groups`` groups, a share ``no_group`` in group 0."""
    history = random_history(SPEC, [length], seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    ids = torch.randint(1, groups + 1, (length,), generator=gen)
    ids = torch.where(torch.rand(length, generator=gen) < no_group, 0, ids)
    numeric = torch.randn(length, SPEC.num_numeric, generator=gen) * 3
    items = torch.randint(0, ITEMS, (length,), generator=gen)  # 0: unknown, matches none
    return dataclasses.replace(history, group_ids=ids, numeric=numeric, item_ids=items)


def _rows(history: History, lo: int, hi: int) -> History:
    return take_history_rows(history, slice(lo, hi), torch.tensor([hi - lo]))


def _recomputed(enc: DMGIN, history: History, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(candidates' scores from the whole history [C, out], what the state gave)``."""
    cands = random_query(SPEC, 1, candidates=9, seed=seed)
    # some candidates in groups the user has, one in no group
    groups = cands.group_ids.clone()
    groups[0, :4] = history.group_ids[-4:] if history.group_ids.numel() >= 4 else 1
    groups[0, 4] = 0
    items = torch.arange(9).remainder(ITEMS).unsqueeze(0)  # every item, 0 included
    cands = dataclasses.replace(cands, group_ids=groups, item_ids=items)
    return cands, enc.forward_candidates(cands, history)[0]


@settings(max_examples=25, deadline=None)
@given(
    length=st.integers(0, 120),
    cuts=st.lists(st.integers(0, 120), max_size=4),
    groups=st.integers(1, 9),
    no_group=st.sampled_from([0.0, 0.3]),
    off=st.sets(st.sampled_from(SWITCHES), max_size=2),
    items=st.booleans(),
    seed=st.integers(0, 10_000),
)
def test_appends_equal_recompute_on_random_logs(
    length: int,
    cuts: list[int],
    groups: int,
    no_group: float,
    off: set[str],
    items: bool,
    seed: int,
) -> None:
    """Build from a prefix, append the rest in random chunks: after every chunk the state
    scores candidates exactly as DMGIN on the whole history so far (every switch off in turn,
    small G / M / K so that groups fall out of the kept set and windows overflow)."""
    config = DMGINConfig(
        max_groups=3,
        max_per_group=2,
        hidden_dim=8,
        target_group_max_len=3,
        use_target_item_statistics=items,
        **{name: False for name in off},
    )
    torch.manual_seed(seed)
    enc = DMGIN(SPEC, config).eval()
    log = _log(length, groups, no_group, seed)
    points = sorted({min(c, length) for c in cuts} | {length})
    state = build_dmgin_state(enc, _rows(log, 0, points[0]))
    done = points[0]
    for point in points[1:] or [length]:
        state = append_dmgin_events(enc, state, _rows(log, done, point))
        done = point
        cands, want = _recomputed(enc, _rows(log, 0, done), seed)
        got = score_dmgin_state(
            enc, state, cands.embeddings[0], cands.group_ids[0], cands.item_ids[0]
        )
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    # the state survives a round trip through its tensors
    again = DMGINServingState.from_dict(state.to_dict())
    torch.testing.assert_close(
        score_dmgin_state(enc, again, cands.embeddings[0], cands.group_ids[0], cands.item_ids[0]),
        want,
        atol=1e-5,
        rtol=1e-5,
    )


def test_one_event_at_a_time_equals_build_and_changes_the_scores() -> None:
    """Appending events one by one equals building from scratch, and an append changes what
    the state scores (the new behavior is not ignored)."""
    torch.manual_seed(0)
    enc = DMGIN(SPEC, DMGINConfig(max_groups=4, max_per_group=3, hidden_dim=8)).eval()
    log = _log(60, 6, 0.1, 3)
    cands = random_query(SPEC, 1, candidates=12, seed=5)
    state = build_dmgin_state(enc, _rows(log, 0, 30))
    before = score_dmgin_state(enc, state, cands.embeddings[0], cands.group_ids[0])
    for i in range(30, 60):
        state = append_dmgin_events(enc, state, _rows(log, i, i + 1))
    got = score_dmgin_state(enc, state, cands.embeddings[0], cands.group_ids[0])
    built = build_dmgin_state(enc, _rows(log, 0, 60))
    torch.testing.assert_close(
        got,
        score_dmgin_state(enc, built, cands.embeddings[0], cands.group_ids[0]),
        atol=1e-5,
        rtol=1e-5,
    )
    assert not torch.allclose(before, got, atol=1e-3)
    # only retained rows are kept: at most W per touched group
    window = max(enc.config.max_per_group, enc.config.target_group_max_len)
    assert state.embeddings.shape[0] <= window * state.keys.numel()


def test_item_statistics_need_the_candidates_items_and_old_states_load() -> None:
    """A DMGIN that reads the candidate item's statistics refuses to score without item ids;
    a state saved before the per-item tables existed loads with empty ones (its encoder never
    reads them) and scores as before."""
    torch.manual_seed(0)
    config = DMGINConfig(max_groups=3, max_per_group=2, hidden_dim=8)
    log = _log(30, 4, 0.1, 2)
    cands, want = _recomputed(DMGIN(SPEC, config).eval(), log, 2)
    torch.manual_seed(0)
    plain = DMGIN(SPEC, config).eval()
    saved = build_dmgin_state(plain, log).to_dict()
    assert saved["item_keys"].numel() == 0  # not kept when not read
    old = {k: v for k, v in saved.items() if not k.startswith("item_")}
    loaded = DMGINServingState.from_dict(old)
    got = score_dmgin_state(plain, loaded, cands.embeddings[0], cands.group_ids[0])
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    reads = DMGIN(SPEC, dataclasses.replace(config, use_target_item_statistics=True)).eval()
    state = build_dmgin_state(reads, log)
    assert state.item_keys.numel() > 0 and not bool((state.item_keys == 0).any())
    with pytest.raises(ValueError, match="item_ids"):
        score_dmgin_state(reads, state, cands.embeddings[0], cands.group_ids[0])
