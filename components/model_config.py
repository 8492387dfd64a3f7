"""The CTR model's configuration and output types (:mod:`components.model` builds the model).

Shapes: B samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

GROUP_KEYS = ("category", "item", "cluster")


@dataclass
class Vocab:
    """Embedding table sizes (max index + 1; index 0 = padding / unknown).

    Attributes:
        users, items, categories, behaviors: id vocabularies.
        num_numeric: F, numeric fields per behavior.
        groups: size of the ``item -> group`` table's group ids (cluster group key only).
    """

    users: int
    items: int
    categories: int
    behaviors: int
    num_numeric: int = 0
    groups: int | None = None


@dataclass
class ModelConfig:
    """Attributes:
    embedding_dim: E, dimension of the user, item and category tables.
    behavior_dim: D_b, dimension of the behavior-type table.
    encoder: a built-in encoder name (components.encoders.registry.ENCODERS) or your own as
        ``"package.module:ClassName"``.
    encoder_config: fields of that encoder's config dataclass.
    group_key: interest groups of behaviors: ``category`` id, ``item`` id (DGIN) or a content
        ``cluster`` (needs an ``item_to_group`` table).
    over_arch: hidden sizes of the final MLP (a last layer of size 1 is added).
    over_arch_dropout: dropout after each hidden layer of the over-arch (training only).
    attention_dropout: dropout on the encoder's attention weights (every
        :class:`~components.layers.attention_dropout.AttentionDropout` in it; training only).
    use_user_embedding: feed the user id embedding to the over-arch.
    numeric_summary: feed the mean of each numeric field over the history to the over-arch.
    numeric_scaling: scale numeric event fields before any layer reads them (signed log, then
        the center/scale fit on the training events; ``components.layers.numeric``). Off: the
        raw values, for data scaled upstream.
    """

    embedding_dim: int = 16
    behavior_dim: int = 8
    encoder: str = "DMGIN"
    encoder_config: dict[str, Any] = field(default_factory=dict)
    group_key: str = "category"
    over_arch: list[int] = field(default_factory=lambda: [200, 80])
    over_arch_dropout: float = 0.0
    attention_dropout: float = 0.0
    use_user_embedding: bool = True
    numeric_summary: bool = True
    numeric_scaling: bool = True

    def __post_init__(self) -> None:
        if self.group_key not in GROUP_KEYS:
            raise ValueError(f"group_key must be one of {GROUP_KEYS}, got {self.group_key!r}")
        if self.embedding_dim < 1 or self.behavior_dim < 1:
            raise ValueError("embedding_dim and behavior_dim must be >= 1")
        if not 0.0 <= self.over_arch_dropout < 1.0:
            raise ValueError(f"over_arch_dropout must be in [0, 1), got {self.over_arch_dropout}")
        if not 0.0 <= self.attention_dropout < 1.0:
            raise ValueError(f"attention_dropout must be in [0, 1), got {self.attention_dropout}")


@dataclass
class ModelOutput:
    logits: torch.Tensor  # [B]
    aux_logits: dict[str, torch.Tensor]  # name -> [B]
