"""Where the service keeps each user's behavior log and cached encoder state.

:class:`StateStore` is the one interface; :class:`MemoryStore` (in-process: logs in a dict,
states in an LRU of ``capacity`` users, the embedded default) and
:class:`~pipelines.serve.state.redis_store.RedisStore` (a Redis server, shared by restarts)
implement it. :func:`open_store` picks one from a URL (``memory://``, ``redis://host:port/db``).

The log is the truth; a state is a cache of it that :meth:`StateStore.append` replaces in the
same atomic step that extends the log, so a crash never leaves a state that covers another log.

Example:
    >>> from pipelines.serve.state.events import Events
    >>> store = MemoryStore(capacity=2)
    >>> store.append(7, Events.from_lists([1], [1], [1], [5.0], [[]]), None)
    >>> len(store.log(7, 0)), store.state(7) is None
    (1, True)
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections import OrderedDict

from pipelines.serve.state.cached import CachedState
from pipelines.serve.state.events import Events, concat_events


class StateStore(ABC):
    """Per user: an append-only log of :class:`Events` and at most one :class:`CachedState`."""

    @abstractmethod
    def log(self, user: int, num_numeric: int) -> Events:
        """The user's whole log (empty when none)."""

    @abstractmethod
    def log_length(self, user: int) -> int:
        """Behaviors in the user's log (without reading it)."""

    @abstractmethod
    def state(self, user: int) -> CachedState | None:
        """The cached state, or None."""

    @abstractmethod
    def append(self, user: int, events: Events, state: CachedState | None) -> None:
        """Extend the log and replace the state (None: drop it) atomically."""

    @abstractmethod
    def put_state(self, user: int, state: CachedState) -> None:
        """Cache a state (the log is unchanged)."""

    @abstractmethod
    def users(self) -> list[int]:
        """Every user with a log."""

    def ping(self) -> bool:
        return True

    def close(self) -> None:  # noqa: B027 (optional hook)
        pass


class MemoryStore(StateStore):
    """Logs in a dict, states in an LRU of ``capacity`` users (least recently used evicted)."""

    def __init__(self, capacity: int = 10_000) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._logs: dict[int, list[Events]] = {}
        self._states: OrderedDict[int, CachedState] = OrderedDict()
        self._lock = threading.Lock()

    def log(self, user: int, num_numeric: int) -> Events:
        with self._lock:
            parts = list(self._logs.get(user, []))
        merged = concat_events(parts, num_numeric)
        if len(parts) > 1:
            with self._lock:  # keep one chunk: later reads are a plain lookup
                if len(self._logs.get(user, [])) == len(parts):
                    self._logs[user] = [merged]
        return merged

    def log_length(self, user: int) -> int:
        with self._lock:
            return sum(len(part) for part in self._logs.get(user, []))

    def state(self, user: int) -> CachedState | None:
        with self._lock:
            state = self._states.get(user)
            if state is not None:
                self._states.move_to_end(user)
            return state

    def _put(self, user: int, state: CachedState | None) -> None:
        if state is None:
            self._states.pop(user, None)
            return
        self._states[user] = state
        self._states.move_to_end(user)
        while len(self._states) > self.capacity:
            self._states.popitem(last=False)

    def append(self, user: int, events: Events, state: CachedState | None) -> None:
        with self._lock:
            self._logs.setdefault(user, []).append(events)
            self._put(user, state)

    def put_state(self, user: int, state: CachedState) -> None:
        with self._lock:
            self._put(user, state)

    def users(self) -> list[int]:
        with self._lock:
            return sorted(self._logs)


def open_store(url: str, capacity: int = 10_000) -> StateStore:
    """``memory://`` -> :class:`MemoryStore`; ``redis://host:port[/db]`` -> ``RedisStore``."""
    if url in ("memory", "memory://"):
        return MemoryStore(capacity)
    if url.startswith(("redis://", "unix://")):
        from pipelines.serve.state.redis_store import RedisStore

        return RedisStore(url)
    raise ValueError(f"--store {url!r}: expected memory:// or redis://host:port[/db]")
