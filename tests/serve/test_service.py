"""The ranking service as a real uvicorn process on 127.0.0.1: answers, 4xx, fuzzed bodies."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import uvicorn

from pipelines.serve.model_loader import load_serving_model
from pipelines.serve.service import create_app
from pipelines.serve.state.events import concat_events
from pipelines.serve.state.store import MemoryStore

from .helpers import (
    events_json,
    free_port,
    random_events,
    request,
    serving_model,
    start_service,
    stop,
    write_model,
)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    path = write_model("DMGIN", tmp_path_factory.mktemp("serve") / "dmgin.pt2")
    proc, port = start_service(path, "memory://", "--max-candidates", "64")
    try:
        yield port, path
    finally:
        stop(proc)


def test_rank_follows_appends_and_equals_the_model(service: tuple[int, Path]) -> None:
    port, path = service
    model = load_serving_model(path)
    assert request(port, "GET", "/health") == (
        200,
        {"status": "ok", "encoder": "DMGIN", "version": model.version, "stateful": True},
    )
    chunks = [random_events(k, seed=i) for i, k in enumerate((30, 1, 12))]
    items, cats = list(range(1, 41)), [i % 11 + 1 for i in range(40)]
    now = float(chunks[-1].ts[-1]) + 60.0
    body = {"user": 5, "items": items, "categories": cats, "now": now}
    kinds = []
    for i, chunk in enumerate(chunks):
        status, answer = request(port, "POST", "/append", events_json(5, chunk))
        assert status == 200 and answer["length"] == sum(len(c) for c in chunks[: i + 1])
        status, ranked = request(port, "POST", "/rank", body)
        assert status == 200
        kinds.append(ranked["state"])
        want = model.rank_from_log(
            5, concat_events(chunks[: i + 1], 2), ranked["as_of"], np.array(items), np.array(cats)
        )
        np.testing.assert_allclose(ranked["scores"], want, atol=1e-5)
    assert kinds == ["cold", "warm", "warm"]  # built once, then appended to


@pytest.mark.parametrize(
    ("path", "body", "status", "says"),
    [
        ("/rank", {"user": 1, "items": [1, 999], "categories": [1, 1]}, 422, "items: id 999"),
        ("/rank", {"user": 1, "items": [1], "categories": [99]}, 422, "categories: id 99"),
        ("/rank", {"user": 77, "items": [1], "categories": [1]}, 422, "user: id 77"),
        ("/rank", {"user": 1, "items": [1] * 65, "categories": [1] * 65}, 413, "limit is 64"),
        ("/rank", {"user": 1, "items": [1, 2], "categories": [1]}, 422, "categories: 1 values"),
        ("/rank", {"user": 1, "items": [], "categories": []}, 422, "at least one"),
        ("/rank", {"user": "1", "items": [1], "categories": [1]}, 422, "user"),
        ("/rank", {"user": 1, "items": [1], "categories": [1], "extra": 1}, 422, "extra"),
        (
            "/append",
            {
                "user": 1,
                "items": [1],
                "categories": [1],
                "behaviors": [9],
                "ts": [1.0],
                "numeric": [[0, 0]],
            },
            422,
            "behavior: id 9",
        ),
        (
            "/append",
            {
                "user": 1,
                "items": [1],
                "categories": [1],
                "behaviors": [1],
                "ts": [1.0],
                "numeric": [[0]],
            },
            422,
            "numeric: needs 1 rows of 2",
        ),
        ("/append", {"user": 1, "items": [1], "categories": [1], "behaviors": [1]}, 422, "ts"),
    ],
)
def test_bad_requests_get_a_4xx_naming_the_field(
    service: tuple[int, Path], path: str, body: dict[str, Any], status: int, says: str
) -> None:
    port, _ = service
    got, answer = request(port, "POST", path, body)
    assert got == status, answer
    assert says in json.dumps(answer)
    assert request(port, "POST", path, raw=b'{"user": 1, "items": [')[0] == 422  # not JSON


def _mutate(rng: random.Random, body: Any) -> Any:
    """A random corruption of a JSON value: wrong types, sizes, ids, nesting, deletions."""
    choice = rng.random()
    junk = [None, -1, 2**63, 1e308, float("nan"), "x", [], {}, [[1]], True, 0.5, 10**6]
    if isinstance(body, dict) and body and choice < 0.6:
        key = rng.choice(list(body))
        out = dict(body)
        if rng.random() < 0.2:
            del out[key]
        else:
            out[key] = _mutate(rng, body[key])
        return out
    if isinstance(body, list) and body and choice < 0.6:
        out = list(body)
        i = rng.randrange(len(out))
        out[i] = _mutate(rng, out[i])
        if rng.random() < 0.3:
            out = out * rng.randint(2, 40)
        return out
    return rng.choice(junk)


def test_a_thousand_fuzzed_bodies_get_only_2xx_or_4xx(service: tuple[int, Path]) -> None:
    port, _ = service
    rng = random.Random(0)
    events = events_json(9, random_events(3, seed=3))
    rank = {"user": 9, "items": [1, 2, 3], "categories": [1, 2, 3], "now": 2e9}
    statuses = []
    for i in range(1000):
        path, base = ("/append", events) if i % 2 else ("/rank", rank)
        body = _mutate(rng, base)
        for _ in range(rng.randint(0, 2)):
            body = _mutate(rng, body)
        raw = json.dumps(body, allow_nan=True).encode()
        if i % 10 == 0:
            raw = raw[: rng.randrange(len(raw) + 1)]  # truncated
        status, answer = request(port, "POST", path, raw=raw)
        assert status < 500, (path, raw[:300], answer)
        statuses.append(status)
    assert request(port, "GET", "/health")[0] == 200
    assert {200, 422} <= set(statuses)  # the fuzz reached both the model and the validation
    status, ranked = request(port, "POST", "/rank", rank)
    assert status == 200 and len(ranked["scores"]) == 3


class _SlowStore(MemoryStore):
    """A memory store that answers state reads late, so that requests for one user overlap."""

    def state(self, user: int):  # noqa: ANN201
        time.sleep(0.01)
        return super().state(user)


def test_concurrent_appends_and_ranks_for_one_user_leave_a_recomputable_state() -> None:
    """8 threads append and rank for the same user at once through a real uvicorn server on a
    store whose reads are slow (overlap is certain): nothing is lost and the cached state
    ranks exactly as a recompute from the final log."""
    model = serving_model("DMGIN")
    store = _SlowStore()
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(model, store), host="127.0.0.1", port=port, log_level="error")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        items, cats = np.arange(1, 21), np.arange(20) % 11 + 1
        rank = {"user": 4, "items": items.tolist(), "categories": cats.tolist(), "now": 2e9}
        assert request(port, "POST", "/append", events_json(4, random_events(20, seed=1)))[0] == 200
        assert request(port, "POST", "/rank", rank)[0] == 200  # a state to append to
        statuses: list[int] = []

        def worker(w: int) -> None:
            for j in range(5):
                if w % 4 == 3:
                    statuses.append(request(port, "POST", "/rank", rank)[0])
                else:
                    events = random_events(3, seed=1000 * w + j, start=1.9e9)
                    statuses.append(request(port, "POST", "/append", events_json(4, events))[0])

        workers = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
        for t in workers:
            t.start()
        for t in workers:
            t.join()
        assert set(statuses) == {200}
        log = store.log(4, 2)
        assert len(log) == 20 + 6 * 5 * 3
        state = store.state(4)
        assert state is not None and model.usable(state, len(log))
        np.testing.assert_allclose(
            model.rank(4, state, items, cats),
            model.rank_from_log(4, log, state.as_of, items, cats),
            atol=1e-5,
        )
    finally:
        server.should_exit = True
        thread.join(timeout=10)
