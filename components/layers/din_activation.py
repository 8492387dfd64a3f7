"""DIN's local activation unit (Zhou et al., KDD 2018)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from components.layers.attention_dropout import AttentionDropout
from components.layers.mlp import MLP


class DINActivationUnit(nn.Module):
    """Weights behaviors by an MLP over ``[q, k, q - k, q * k]`` and sum-pools them.

    As in the paper there is no softmax: the weighted sum keeps the intensity of interest.
    ``query [B, D]``, ``keys [B, T, D]``, ``mask [B, T]`` -> ``[B, D]``.

    Example:
        >>> unit = DINActivationUnit(16)
        >>> unit(torch.randn(2, 16), torch.randn(2, 5, 16), torch.ones(2, 5, dtype=torch.bool)).shape
        torch.Size([2, 16])
    """

    def __init__(self, dim: int, hidden: Sequence[int] = (80, 40)) -> None:
        super().__init__()
        self.mlp = MLP(4 * dim, [*hidden, 1], activation="prelu")
        self.output_dim = dim
        self.attention_dropout = AttentionDropout()

    def forward(self, query: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        q = query.unsqueeze(1).expand_as(keys)
        weights = self.mlp(torch.cat([q, keys, q - keys, q * keys], dim=-1)).squeeze(-1)
        weights = self.attention_dropout(weights * mask.to(weights.dtype))
        return (weights.unsqueeze(-1) * keys).sum(dim=1)

    def forward_jagged(
        self, query: torch.Tensor, keys: torch.Tensor, segment: torch.Tensor
    ) -> torch.Tensor:
        """The same pooling without padding: ``query [B, D]``, ``keys [N, D]`` jagged rows,
        ``segment [N]`` sample of each row -> ``[B, D]`` (O(N), not O(B * max length))."""
        q = query[segment]
        weights = self.attention_dropout(self.mlp(torch.cat([q, keys, q - keys, q * keys], dim=-1)))
        return torch.zeros_like(query).index_add(0, segment, weights * keys)
