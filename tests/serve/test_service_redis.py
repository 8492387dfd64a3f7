"""The service on a real redis-server: concurrent requests for one user, kill -9 mid-load."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter

import numpy as np

from pipelines.serve.model_loader import load_serving_model
from pipelines.serve.state.store import open_store

from .helpers import (
    events_json,
    random_events,
    redis_server,
    request,
    serving_model,
    start_service,
    stop,
    write_model,
)

ITEMS, CATS = np.arange(1, 31), np.arange(30) % 11 + 1


def _check_every_state(url: str, model_path) -> int:  # noqa: ANN001
    """Every state Redis holds equals one rebuilt from its log; returns how many there were."""
    model = load_serving_model(model_path)
    store = open_store(url)
    checked = 0
    for user in store.users():
        state = store.state(user)
        log = store.log(user, model.num_numeric)
        assert store.log_length(user) == len(log)
        if state is None or not model.usable(state, len(log)):
            continue  # a missing or stale state is rebuilt on the next /rank, never used
        want = model.rank_from_log(user, log, state.as_of, ITEMS, CATS)
        np.testing.assert_allclose(model.rank(user, state, ITEMS, CATS), want, atol=1e-5)
        checked += 1
    store.close()
    return checked


def test_concurrency_kill_and_restart(tmp_path) -> None:  # noqa: ANN001
    path = write_model("DMGIN", tmp_path / "dmgin.pt2")
    with redis_server() as url:
        proc, port = start_service(path, url)
        try:
            # 1. concurrent appends and ranks for the same user (and a second user)
            sent: Counter = Counter()
            errors: list[str] = []
            lock = threading.Lock()

            def appender(seed: int, user: int) -> None:
                for j in range(8):
                    events = random_events(5 + (seed + j) % 16, seed=100 * seed + j)
                    status, answer = request(port, "POST", "/append", events_json(user, events))
                    if status != 200:
                        errors.append(str(answer))
                    with lock:
                        sent.update((user, int(i)) for i in events.item)

            def ranker(user: int) -> None:
                for _ in range(8):
                    body = {
                        "user": user,
                        "items": ITEMS.tolist(),
                        "categories": CATS.tolist(),
                        "now": 2e9,
                    }
                    status, answer = request(port, "POST", "/rank", body)
                    if status != 200:
                        errors.append(str(answer))

            threads = [threading.Thread(target=appender, args=(s, 1)) for s in range(6)]
            threads += [threading.Thread(target=ranker, args=(1,)) for _ in range(3)]
            threads += [threading.Thread(target=appender, args=(7, 2))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert not errors, errors[:3]
            store = open_store(url)
            logged = Counter()
            for user in (1, 2):
                logged.update((user, int(i)) for i in store.log(user, 2).item)
            assert logged == sent  # every behavior logged once, none lost
            store.close()
            status, ranked = request(
                port,
                "POST",
                "/rank",
                {"user": 1, "items": ITEMS.tolist(), "categories": CATS.tolist(), "now": 2e9},
            )
            model = load_serving_model(path)
            log = open_store(url).log(1, 2)
            np.testing.assert_allclose(
                ranked["scores"],
                model.rank_from_log(1, log, ranked["as_of"], ITEMS, CATS),
                atol=1e-5,
            )
            assert _check_every_state(url, path) == 1  # user 2, never ranked, has no state

            # 2. kill -9 in the middle of a load of appends and ranks over 12 users
            stop_load = threading.Event()

            def load(worker: int) -> None:
                j = 0
                while not stop_load.is_set():
                    user = 10 + (worker * 7 + j) % 12
                    try:
                        if j % 3:
                            request(
                                port,
                                "POST",
                                "/append",
                                events_json(user, random_events(1 + j % 5, seed=j)),
                                timeout=5,
                            )
                        else:
                            request(
                                port,
                                "POST",
                                "/rank",
                                {
                                    "user": user,
                                    "items": ITEMS.tolist(),
                                    "categories": CATS.tolist(),
                                    "now": 2e9,
                                },
                                timeout=5,
                            )
                    except OSError:
                        return  # the service is gone
                    j += 1

            workers = [threading.Thread(target=load, args=(w,)) for w in range(4)]
            for t in workers:
                t.start()
            time.sleep(3.0)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            stop_load.set()
            for t in workers:
                t.join()
        finally:
            stop(proc)
        assert _check_every_state(url, path) >= 3  # states written before the kill are whole

        # 3. a restarted service serves every user consistently with its log
        proc, port = start_service(path, url)
        try:
            model = load_serving_model(path)
            store = open_store(url)
            for user in store.users():
                status, ranked = request(
                    port,
                    "POST",
                    "/rank",
                    {
                        "user": user,
                        "items": ITEMS.tolist(),
                        "categories": CATS.tolist(),
                        "now": 2e9,
                    },
                )
                assert status == 200
                want = model.rank_from_log(user, store.log(user, 2), ranked["as_of"], ITEMS, CATS)
                np.testing.assert_allclose(ranked["scores"], want, atol=1e-5)
            # 4. a model of another version never uses these states: it rebuilds them
            other = serving_model("DMGIN", seed=5)
            assert all(not other.usable(store.state(u), store.log_length(u)) for u in store.users())
            store.close()
        finally:
            stop(proc)
