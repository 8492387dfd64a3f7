"""A pre-norm transformer block with key padding, and masked mean pooling."""

from __future__ import annotations

import torch
from torch import nn


class SelfAttentionBlock(nn.Module):
    """``x [S, M, D]``, ``mask [S, M]`` (True = valid) -> ``[S, M, D]``.

    Pre-norm multi-head self-attention with a residual, optionally followed by a pre-norm
    feed-forward block (``feed_forward=True``). Every sequence
    must have at least one valid position (callers drop empty ones first); padded positions
    of the output are zero.

    Example:
        >>> block = SelfAttentionBlock(32, num_heads=2)
        >>> block(torch.randn(5, 8, 32), torch.ones(5, 8, dtype=torch.bool)).shape
        torch.Size([5, 8, 32])
    """

    def __init__(
        self, dim: int, num_heads: int = 2, dropout: float = 0.0, feed_forward: bool = False
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attention = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        self.ffn = (
            nn.Sequential(
                nn.LayerNorm(dim), nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim)
            )
            if feed_forward
            else None
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        attended, _ = self.attention(h, h, h, key_padding_mask=~mask, need_weights=False)
        x = x + attended
        if self.ffn is not None:
            x = x + self.ffn(x)
        return x * mask.unsqueeze(-1).to(x.dtype)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x [..., M, D]`` over valid positions of ``mask [..., M]`` (0 when none)."""
    weights = mask.to(x.dtype).unsqueeze(-1)
    return (x * weights).sum(dim=-2) / weights.sum(dim=-2).clamp_min(1.0)
