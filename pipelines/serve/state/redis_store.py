"""A :class:`~pipelines.serve.state.store.StateStore` on a Redis server.

Keys per user u: ``lifelongrec:log:u`` (a list of packed event chunks,
``lifelongrec:length:u`` their total length,
:func:`~pipelines.serve.state.events.pack_events`), ``lifelongrec:state:u`` (an encoded
:class:`~pipelines.serve.state.cached.CachedState`) and the set ``lifelongrec:users``. An
append pushes the chunk and sets (or deletes) the state in one MULTI/EXEC transaction, so a
client killed at any point leaves either both or neither.
"""

from __future__ import annotations

import redis

from pipelines.serve.state.cached import CachedState, decode_state, encode_state
from pipelines.serve.state.events import Events, concat_events, pack_events, unpack_events
from pipelines.serve.state.store import StateStore

_PREFIX = "lifelongrec"


class RedisStore(StateStore):
    """Logs and states in the Redis server at ``url`` (``redis://host:port/db``)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.client = redis.Redis.from_url(url, socket_timeout=30)
        try:
            self.client.ping()
        except redis.RedisError as err:
            raise ConnectionError(f"--store {url}: Redis does not answer: {err}") from err

    @staticmethod
    def _log_key(user: int) -> str:
        return f"{_PREFIX}:log:{user}"

    @staticmethod
    def _state_key(user: int) -> str:
        return f"{_PREFIX}:state:{user}"

    def log(self, user: int, num_numeric: int) -> Events:
        chunks = self.client.lrange(self._log_key(user), 0, -1)
        return concat_events([unpack_events(c) for c in chunks], num_numeric)

    def log_length(self, user: int) -> int:
        return int(self.client.get(f"{_PREFIX}:length:{user}") or 0)

    def state(self, user: int) -> CachedState | None:
        data = self.client.get(self._state_key(user))
        return None if data is None else decode_state(data)

    def append(self, user: int, events: Events, state: CachedState | None) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.rpush(self._log_key(user), pack_events(events))
        pipe.sadd(f"{_PREFIX}:users", user)
        pipe.incrby(f"{_PREFIX}:length:{user}", len(events))
        if state is None:
            pipe.delete(self._state_key(user))
        else:
            pipe.set(self._state_key(user), encode_state(state))
        pipe.execute()

    def put_state(self, user: int, state: CachedState) -> None:
        self.client.set(self._state_key(user), encode_state(state))

    def users(self) -> list[int]:
        return sorted(int(u) for u in self.client.smembers(f"{_PREFIX}:users"))

    def ping(self) -> bool:
        try:
            return bool(self.client.ping())
        except redis.RedisError:
            return False

    def close(self) -> None:
        self.client.close()
