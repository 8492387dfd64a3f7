"""Cached user states: incremental appends equal recomputing from the log, versions, stores."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.serve.state.cached import decode_state, encode_state
from pipelines.serve.state.events import concat_events, pack_events, unpack_events
from pipelines.serve.state.store import MemoryStore, open_store

from .helpers import random_events, redis_server, serving_model

STATEFUL = ["DMGIN", "DMGIN+item", "SIMHard", "ETA"]


@pytest.mark.parametrize("encoder", STATEFUL)
def test_appended_state_ranks_like_the_model_on_the_whole_log(encoder: str) -> None:
    """Build on 40 behaviors, append 1, 7 and 25 more (some newer than the state's reference
    time): every ranking equals the model's own ``rank_candidates`` on the whole log."""
    model = serving_model(encoder)
    log = random_events(73, seed=1)
    as_of = float(log.ts[50])  # later behaviors are "newer than the reference"
    # candidates the user met before (early, late, after the reference time) and new ones
    items = np.concatenate(
        [log.item[[0, 5, 39, 45, 60]], np.random.default_rng(2).integers(1, 400, 25)]
    )
    categories = np.concatenate([log.category[-10:], np.random.default_rng(3).integers(1, 12, 20)])
    state = model.build(log.slice(0, 40), as_of)
    for lo, hi in ((40, 41), (41, 48), (48, 73)):
        state = model.append(state, log.slice(lo, hi))
        want = model.rank_from_log(7, log.slice(0, hi), as_of, items, categories)
        np.testing.assert_allclose(model.rank(7, state, items, categories), want, atol=1e-5)
    assert state.length == 73 and model.usable(state, 73)
    # serialised and read back, it still ranks the same
    again = decode_state(encode_state(state))
    np.testing.assert_allclose(model.rank(7, again, items, categories), want, atol=1e-5)


def test_a_state_of_another_model_version_or_log_is_not_used() -> None:
    model, retrained = serving_model("DMGIN", seed=0), serving_model("DMGIN", seed=1)
    log = random_events(30, seed=4)
    state = model.build(log, float(log.ts[-1]))
    assert model.usable(state, 30)
    assert retrained.version != model.version
    assert not retrained.usable(state, 30)  # other weights: rebuilt
    assert not model.usable(state, 31)  # covers another log
    assert decode_state(b"not a state") is None


def test_events_pack_round_trip_and_refuse_a_truncated_chunk() -> None:
    events = random_events(9, seed=5)
    back = unpack_events(pack_events(events))
    for name in ("item", "category", "behavior", "ts", "numeric"):
        np.testing.assert_array_equal(getattr(back, name), getattr(events, name))
    with pytest.raises(ValueError, match="does not hold 9 events"):
        unpack_events(pack_events(events)[:-3])
    assert len(concat_events([events, events.slice(0, 2)], 2)) == 11


def test_memory_store_is_an_lru_of_states_over_complete_logs() -> None:
    model = serving_model("SIMHard")
    store = MemoryStore(capacity=2)
    for user in range(3):
        events = random_events(5, seed=user)
        store.append(user, events, model.build(events, 2e9))
    assert store.state(0) is None and store.state(1) is not None  # 0 was evicted
    assert [store.log_length(u) for u in range(3)] == [5, 5, 5]  # logs are never evicted
    store.append(1, random_events(2, seed=9), None)
    assert store.state(1) is None and store.log_length(1) == 7
    with pytest.raises(ValueError, match="--store"):
        open_store("postgres://x")


def test_redis_store_keeps_logs_and_states_across_clients() -> None:
    model = serving_model("DMGIN")
    with redis_server() as url:
        store = open_store(url)
        first, second = random_events(6, seed=1), random_events(4, seed=2, start=2e9)
        state = model.build(first, 2.1e9)
        store.append(3, first, state)
        store.append(3, second, model.append(state, second))
        other = open_store(url)  # a new client (a restarted service) sees the same
        assert other.users() == [3] and other.log_length(3) == 10
        log = other.log(3, 2)
        np.testing.assert_array_equal(log.item, np.concatenate([first.item, second.item]))
        cached = other.state(3)
        assert cached is not None and model.usable(cached, 10)
        items, cats = log.item[:5], log.category[:5]
        np.testing.assert_allclose(
            model.rank(3, cached, items, cats),
            model.rank_from_log(3, log, 2.1e9, items, cats),
            atol=1e-5,
        )
        store.close()
        other.close()
