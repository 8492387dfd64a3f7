"""Dropout on attention weights, set for a whole model by one switch (``model.attention_dropout``).

Every attention in the encoders (target attention in SIM / ETA / TWIN-V2 / DMGIN, TWIN's ESU,
CiUBM's SA-TA, DIN's activation-unit weights, HSTU's pointwise weights) applies one of these to
its weights before pooling; :func:`set_attention_dropout` sets them all at once. Default p = 0
(the identity). Only active in training mode, as ``nn.Dropout``.

Example:
    >>> layer = AttentionDropout()
    >>> set_attention_dropout(nn.Sequential(layer), 0.2)
    1
    >>> layer.p
    0.2
"""

from __future__ import annotations

from torch import nn


class AttentionDropout(nn.Dropout):
    """``nn.Dropout`` on attention weights ``[..., T]``; p = 0 until a model sets it."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__(p)


def set_attention_dropout(module: nn.Module, p: float) -> int:
    """Set p of every :class:`AttentionDropout` under ``module``; returns how many."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"attention dropout must be in [0, 1), got {p}")
    layers = [m for m in module.modules() if isinstance(m, AttentionDropout)]
    for layer in layers:
        layer.p = p
    return len(layers)


__all__ = ["AttentionDropout", "set_attention_dropout"]
