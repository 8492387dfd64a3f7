"""HSTU layer (Zhai et al., arXiv 2402.17152) with relative position and time-gap bias."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from components.layers.attention_dropout import AttentionDropout


class RelativeTimePositionBias(nn.Module):
    """Learned bias per head for each relative position offset and each log-bucketed time gap.

    ``timestamps [B, L]`` (seconds, any origin) -> ``[B, H, L, L]``. Gaps are bucketed as
    ``floor(log2(1 + |dt| / 60))`` (minutes, log scale), capped at ``num_time_buckets - 1``.
    """

    def __init__(self, max_len: int, num_heads: int, num_time_buckets: int = 32) -> None:
        super().__init__()
        self.max_len = max_len
        self.num_time_buckets = num_time_buckets
        self.position = nn.Parameter(torch.zeros(num_heads, 2 * max_len - 1))
        self.time = nn.Parameter(torch.zeros(num_heads, num_time_buckets))

    def forward(self, timestamps: torch.Tensor) -> torch.Tensor:
        length = timestamps.shape[1]
        idx = torch.arange(length, device=timestamps.device)
        offset = (idx.view(1, -1) - idx.view(-1, 1)).clamp(-self.max_len + 1, self.max_len - 1)
        pos = self.position[:, offset + self.max_len - 1]  # [H, L, L]
        gap = (timestamps.unsqueeze(2) - timestamps.unsqueeze(1)).abs() / 60.0
        bucket = torch.log2(1.0 + gap).floor().long().clamp(0, self.num_time_buckets - 1)
        b, h = timestamps.shape[0], self.time.shape[0]
        # gather from the table broadcast to [B, H, L, buckets]: its backward is a scatter_add
        # along the last dim, where advanced indexing (self.time[:, bucket]) would backward
        # through an accumulating index_put, ~10x slower on CPU.
        table = self.time.view(1, h, 1, -1).expand(b, h, length, self.num_time_buckets)
        time = torch.gather(table, 3, bucket.unsqueeze(1).expand(b, h, length, length))
        return time + pos.unsqueeze(0)


class HSTULayer(nn.Module):
    """One HSTU block over ``x [B, L, D]`` with ``mask [B, L]`` and ``timestamps [B, L]``.

    ``U, V, Q, K = split(SiLU(f1(LN(x))))``; ``A = SiLU(Q K^T / sqrt(d) + rab) / n`` (pointwise,
    no softmax; n = number of valid keys; padded and, if ``causal``, future keys masked);
    ``y = x + f2(LN(A V) * U)``. Padded rows of the output are zero.

    Example:
        >>> layer = HSTULayer(32, num_heads=2, max_len=16)
        >>> x, m = torch.randn(4, 16, 32), torch.ones(4, 16, dtype=torch.bool)
        >>> layer(x, m, torch.arange(16.0).expand(4, 16)).shape
        torch.Size([4, 16, 32])
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 2,
        max_len: int = 256,
        causal: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} must be divisible by num_heads {num_heads}")
        self.num_heads, self.head_dim, self.causal = num_heads, dim // num_heads, causal
        self.norm_in = nn.LayerNorm(dim)
        self.f1 = nn.Linear(dim, 4 * dim)
        self.norm_attn = nn.LayerNorm(dim)
        self.f2 = nn.Linear(dim, dim)
        self.bias = RelativeTimePositionBias(max_len, num_heads)
        self.dropout = nn.Dropout(dropout)
        self.attention_dropout = AttentionDropout()

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, timestamps: torch.Tensor
    ) -> torch.Tensor:
        b, length, dim = x.shape
        h, d = self.num_heads, self.head_dim
        u, v, q, k = F.silu(self.f1(self.norm_in(x))).split(dim, dim=-1)
        q = q.view(b, length, h, d).transpose(1, 2)
        k = k.view(b, length, h, d).transpose(1, 2)
        v = v.view(b, length, h, d).transpose(1, 2)
        scores = q @ k.transpose(-1, -2) / math.sqrt(d) + self.bias(timestamps)  # [B, H, L, L]
        allowed = mask.view(b, 1, 1, length) & mask.view(b, 1, length, 1)
        if self.causal:
            allowed = allowed & mask.new_ones((length, length), dtype=torch.bool).tril()
        keys = allowed.sum(dim=-1, keepdim=True).clamp_min(1).to(x.dtype)
        attn = F.silu(scores) * allowed.to(x.dtype) / keys
        attn = self.attention_dropout(attn)
        out = (attn @ v).transpose(1, 2).reshape(b, length, dim)
        y = x + self.dropout(self.f2(self.norm_attn(out) * u))
        return y * mask.unsqueeze(-1).to(y.dtype)
