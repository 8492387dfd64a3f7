"""A user's behaviors as the service receives and logs them: :class:`Events`.

k behaviors, oldest -> newest: item, category and behavior-type ids, unix time ``ts`` (seconds)
and F raw numeric fields. :func:`pack_events` / :func:`unpack_events` give the compact bytes a
store logs (a 16-byte header, then the raw little-endian columns).

Example:
    >>> events = Events.from_lists([3, 4], [1, 1], [1, 2], [10.0, 20.0], [[0.5], [1.0]])
    >>> unpack_events(pack_events(events)).item.tolist()
    [3, 4]
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_HEADER = struct.Struct("<QQ")  # k, F


@dataclass
class Events:
    """Attributes: item, category, behavior ``[k]`` int64; ts ``[k]`` float64 seconds;
    numeric ``[k, F]`` float32 raw values."""

    item: np.ndarray
    category: np.ndarray
    behavior: np.ndarray
    ts: np.ndarray
    numeric: np.ndarray

    def __len__(self) -> int:
        return int(self.item.shape[0])

    @classmethod
    def empty(cls, num_numeric: int) -> Events:
        ids = np.zeros(0, dtype=np.int64)
        return cls(ids, ids, ids, np.zeros(0), np.zeros((0, num_numeric), dtype=np.float32))

    @classmethod
    def from_lists(
        cls,
        item: Sequence[int],
        category: Sequence[int],
        behavior: Sequence[int],
        ts: Sequence[float],
        numeric: Sequence[Sequence[float]],
    ) -> Events:
        k = len(item)
        return cls(
            np.asarray(item, dtype=np.int64).reshape(k),
            np.asarray(category, dtype=np.int64).reshape(k),
            np.asarray(behavior, dtype=np.int64).reshape(k),
            np.asarray(ts, dtype=np.float64).reshape(k),
            np.asarray(numeric, dtype=np.float32).reshape(k, -1),
        )

    def slice(self, lo: int, hi: int) -> Events:
        return Events(
            self.item[lo:hi],
            self.category[lo:hi],
            self.behavior[lo:hi],
            self.ts[lo:hi],
            self.numeric[lo:hi],
        )


def concat_events(parts: Sequence[Events], num_numeric: int) -> Events:
    """The parts one after the other (an empty log of F fields when there are none)."""
    if not parts:
        return Events.empty(num_numeric)
    if len(parts) == 1:
        return parts[0]
    return Events(
        *(
            np.concatenate([getattr(p, name) for p in parts])
            for name in ("item", "category", "behavior", "ts", "numeric")
        )
    )


def pack_events(events: Events) -> bytes:
    k, f = events.numeric.shape
    return b"".join(
        [
            _HEADER.pack(k, f),
            events.item.astype("<i8").tobytes(),
            events.category.astype("<i8").tobytes(),
            events.behavior.astype("<i8").tobytes(),
            events.ts.astype("<f8").tobytes(),
            events.numeric.astype("<f4").tobytes(),
        ]
    )


def unpack_events(data: bytes) -> Events:
    k, f = _HEADER.unpack_from(data)
    sizes = [8 * k, 8 * k, 8 * k, 8 * k, 4 * k * f]
    if len(data) != _HEADER.size + sum(sizes):
        raise ValueError(f"event chunk of {len(data)} bytes does not hold {k} events of {f} fields")
    at, columns = _HEADER.size, []
    for size, dtype in zip(sizes, ("<i8", "<i8", "<i8", "<f8", "<f4"), strict=True):
        columns.append(
            np.frombuffer(
                data, dtype=dtype, count=size // 8 if dtype != "<f4" else k * f, offset=at
            )
        )
        at += size
    item, category, behavior, ts, numeric = columns
    return Events(
        item.astype(np.int64),
        category.astype(np.int64),
        behavior.astype(np.int64),
        ts.astype(np.float64),
        numeric.astype(np.float32).reshape(k, f),
    )
