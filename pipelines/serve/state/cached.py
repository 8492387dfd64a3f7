""":class:`CachedState`: one user's encoder state as a store keeps it, with the version of the
model that computed it, and its bytes form (:func:`encode_state` / :func:`decode_state`).

A state is only ever used by the model it was computed with (same weights and config:
``pipelines.serve.state.user_state.model_version``) and for the log it covers (``length``
behaviors); any other state is rebuilt from the log, never read.

Example:
    >>> import torch
    >>> state = CachedState("v1", "DMGIN", 100.0, 2, torch.zeros(1), {"x": torch.ones(2)})
    >>> decode_state(encode_state(state)).tensors["x"].tolist()
    [1.0, 1.0]
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import torch


@dataclass
class CachedState:
    """Attributes:
    version: model version it was computed with.
    encoder: encoder name (``DMGIN``, ``SIMHard``, ``ETA``).
    as_of: reference time (unix seconds) of its ages.
    length: behaviors of the user's log it covers.
    numeric_sum: ``[F]`` sum of the scaled numeric fields over those behaviors.
    tensors: the encoder state (``DMGINServingState`` / ``SearchServingState`` as a dict).
    """

    version: str
    encoder: str
    as_of: float
    length: int
    numeric_sum: torch.Tensor
    tensors: dict[str, torch.Tensor]


def encode_state(state: CachedState) -> bytes:
    buffer = io.BytesIO()
    torch.save(
        {
            "version": state.version,
            "encoder": state.encoder,
            "as_of": state.as_of,
            "length": state.length,
            "numeric_sum": state.numeric_sum,
            "tensors": state.tensors,
        },
        buffer,
    )
    return buffer.getvalue()


def decode_state(data: bytes) -> CachedState | None:
    """The state in ``data``; None when it is unreadable (then it is rebuilt)."""
    try:
        payload = torch.load(io.BytesIO(data), weights_only=True)
        return CachedState(
            str(payload["version"]),
            str(payload["encoder"]),
            float(payload["as_of"]),
            int(payload["length"]),
            payload["numeric_sum"],
            dict(payload["tensors"]),
        )
    except Exception:  # any corrupt or foreign blob is a cache miss, never a crash
        return None
