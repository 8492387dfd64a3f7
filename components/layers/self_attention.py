"""A pre-norm transformer block with key padding, and masked mean pooling."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MultiHeadSelfAttention(nn.Module):
    """``x [S, M, D]``, ``mask [S, M]`` (True = valid) -> ``[S, M, D]``.

    Scaled dot-product attention per head over the M positions of each of the S sequences,
    padded keys masked out. One fused ``D -> 3D`` projection split with ``chunk`` (whose
    backward is a concatenation): ``nn.MultiheadAttention`` selects q, k, v out of a stacked
    tensor instead, and each select's backward zero-fills a full ``[3, S, M, D]`` buffer, which
    dominated DMGIN's step on CPU. A sequence with no valid key attends to nothing: its
    attended values are zeros, so its output is the out-projection's bias.

    Example:
        >>> attn = MultiHeadSelfAttention(32, num_heads=2)
        >>> attn(torch.randn(5, 8, 32), torch.ones(5, 8, dtype=torch.bool)).shape
        torch.Size([5, 8, 32])
    """

    def __init__(self, dim: int, num_heads: int = 2, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} must be divisible by num_heads {num_heads}")
        self.num_heads, self.dropout = num_heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        s, m, d = x.shape
        h = self.num_heads
        q, k, v = self.qkv(x).chunk(3, dim=-1)  # unpacked directly: FX can trace that
        q, k, v = (t.view(s, m, h, d // h).transpose(1, 2) for t in (q, k, v))  # [S, H, M, d/H]
        allowed = mask.view(s, 1, 1, m)
        attended = F.scaled_dot_product_attention(
            q, k, v, attn_mask=allowed, dropout_p=self.dropout if self.training else 0.0
        )
        attended = torch.nan_to_num(attended, nan=0.0)  # sequences without a valid key
        return self.out(attended.transpose(1, 2).reshape(s, m, d))


class SelfAttentionBlock(nn.Module):
    """``x [S, M, D]``, ``mask [S, M]`` (True = valid) -> ``[S, M, D]``.

    Pre-norm multi-head self-attention with a residual, optionally followed by a pre-norm
    feed-forward block (``feed_forward=True``). Padded positions of the output are zero.

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
        self.attention = MultiHeadSelfAttention(dim, num_heads, dropout)
        self.ffn = (
            nn.Sequential(
                nn.LayerNorm(dim), nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim)
            )
            if feed_forward
            else None
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x), mask)
        if self.ffn is not None:
            x = x + self.ffn(x)
        return x * mask.unsqueeze(-1).to(x.dtype)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x [..., M, D]`` over valid positions of ``mask [..., M]`` (0 when none)."""
    weights = mask.to(x.dtype).unsqueeze(-1)
    return (x * weights).sum(dim=-2) / weights.sum(dim=-2).clamp_min(1.0)
