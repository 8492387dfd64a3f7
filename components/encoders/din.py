"""DIN (arXiv 1706.06978): target attention over the most recent behaviors.

``DIN`` reads the most recent ``max_len`` behaviors (default 50); ``DINFull`` the whole history
it is given: the quality ceiling and the cost ceiling of the two-stage models.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from components.encoders.base import EncoderSpec, History, Query, SequenceEncoder
from components.layers.din_activation import DINActivationUnit
from components.ops import jagged
from components.ops.symbolic import tracing


@dataclass
class DINConfig:
    """Attributes:
    max_len: most recent behaviors attended (DINFull: the whole history up to this cap).
    hidden: activation-unit MLP sizes.
    """

    max_len: int = 50
    hidden: list[int] = field(default_factory=lambda: [80, 40])

    def __post_init__(self) -> None:
        if self.max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {self.max_len}")


@dataclass
class DINFullConfig(DINConfig):
    """DINConfig whose ``max_len`` defaults to the whole history (cap 100,000)."""

    max_len: int = 100_000


class DIN(SequenceEncoder):
    """``(query [B, D], history N rows) -> [B, D]``: DIN pooling over the last ``max_len``.

    Example:
        >>> from components.encoders.example_inputs import random_history, random_query
        >>> spec = EncoderSpec(embedding_dim=32)
        >>> enc = DIN(spec)
        >>> enc(random_query(spec, 2), random_history(spec, [5, 3])).shape
        torch.Size([2, 32])
    """

    config_class: type[DINConfig] = DINConfig

    def __init__(self, spec: EncoderSpec, config: DINConfig | None = None) -> None:
        super().__init__()
        self.config = config or self.config_class()
        self.unit = DINActivationUnit(spec.embedding_dim, self.config.hidden)
        self.output_dim = spec.embedding_dim

    def forward(self, query: Query, history: History) -> torch.Tensor:
        if history.embedding_rows is None:
            keys, mask = jagged.jagged_to_padded(
                history.embeddings, history.offsets, self.config.max_len
            )
        else:  # only the last max_len rows were looked up
            index, mask = jagged.padded_rows(history.offsets, self.config.max_len)
            keys = jagged.gather_padded(history.embeddings, history.embedding_index(index), mask)
        return self.unit(query.embeddings, keys, mask)

    def history_rows(self, query: Query, history: History) -> torch.Tensor | None:
        """The most recent ``max_len`` rows of each sample; None when no sample is longer."""
        if not bool((history.lengths > self.config.max_len).any()):
            return None
        return jagged.last_rows(history.offsets, self.config.max_len)


class DINFull(DIN):
    """DIN over the whole given history (cap 100,000): the O(L) target-attention ceiling.

    Jagged: the activation unit runs on the N history rows themselves, not on a ``[B, T]``
    padding to the batch's longest history (same result as :class:`DIN` with that cap)."""

    config_class = DINFullConfig

    def forward(self, query: Query, history: History) -> torch.Tensor:
        n = history.embeddings.shape[0]
        segment = jagged.segment_ids(history.offsets, n)
        keys = history.embeddings
        max_len = self.config.max_len
        # traced: no branch on the lengths (keeping the last max_len of shorter ones keeps all)
        if tracing() or (n and bool((history.lengths > max_len).any())):
            keep = jagged.last_rows(history.offsets, max_len, n)
            keys, segment = keys[keep], segment[keep]
        return self.unit.forward_jagged(query.embeddings, keys, segment)

    def history_rows(self, query: Query, history: History) -> torch.Tensor | None:
        """All rows: the ceiling reads the whole history (up to its 100,000 cap)."""
        return None
