"""Multi-head target attention: a candidate attends over a padded set of behaviors."""

from __future__ import annotations

import math

import torch
from torch import nn

from components.layers.attention_dropout import AttentionDropout
from components.ops.symbolic import tracing

#: ``forward_shared`` puts the queries of each key set in a [U, P] grid when U * P is at most
#: this many times the Q queries (+ 64); beyond (one set holds most queries) it gathers keys
SHARED_PADDING_LIMIT = 4


class MultiHeadTargetAttention(nn.Module):
    """``query [B, Dq]`` (or ``[B, C, Dq]``) attends over ``keys [B, T, Dk]`` with ``mask [B, T]``.

    Per head h: ``softmax_T((q W_q^h)(k W_k^h)^T / sqrt(d) + extra_logits^h) (k W_v^h)``; the heads
    are concatenated and projected to ``output_dim``. Rows whose mask is all False give zeros
    (never NaN).

    Example:
        >>> att = MultiHeadTargetAttention(32, 40, num_heads=2)
        >>> att(torch.randn(4, 32), torch.randn(4, 10, 40), torch.ones(4, 10, dtype=torch.bool)).shape
        torch.Size([4, 32])
    """

    def __init__(
        self,
        query_dim: int,
        key_dim: int,
        num_heads: int = 2,
        head_dim: int | None = None,
        value_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = head_dim or max(query_dim // num_heads, 1)
        self.value_dim = value_dim or self.head_dim
        self.q = nn.Linear(query_dim, num_heads * self.head_dim, bias=False)
        self.k = nn.Linear(key_dim, num_heads * self.head_dim, bias=False)
        self.v = nn.Linear(key_dim, num_heads * self.value_dim, bias=False)
        self.out = nn.Linear(num_heads * self.value_dim, num_heads * self.value_dim)
        self.output_dim = num_heads * self.value_dim
        self.attention_dropout = AttentionDropout()

    def forward(
        self,
        query: torch.Tensor,
        keys: torch.Tensor,
        mask: torch.Tensor,
        extra_logits: torch.Tensor | None = None,
    ) -> torch.Tensor:
        # [B, Dq] -> [B, 1, Dq]; [B, C, Dq] stays (no branch on the rank: FX traces this)
        q = query.reshape(query.shape[0], -1, query.shape[-1])
        b, c, _ = q.shape
        t = keys.shape[1]
        h, d = self.num_heads, self.head_dim
        qh = self.q(q).view(b, c, h, d).transpose(1, 2)  # [B, H, C, d]
        kh = self.k(keys).view(b, t, h, d).transpose(1, 2)  # [B, H, T, d]
        vh = self.v(keys).view(b, t, h, self.value_dim).transpose(1, 2)
        out = self._attend(qh, kh.transpose(-1, -2), vh, mask, extra_logits)
        return out.reshape(query.shape[:-1] + (self.output_dim,))  # [B, D] or [B, C, D]

    def forward_shared(
        self, query: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor, key_of: torch.Tensor
    ) -> torch.Tensor:
        """``[Q, output_dim]``: what ``forward(query, keys[key_of], mask[key_of])`` gives, for
        ``query [Q, Dq]`` of which many share one of ``U`` key sets (``keys [U, T, Dk]``,
        ``mask [U, T]``, ``key_of [Q]`` in ``[0, U)``): the keys and values are projected once
        per set, not once per query (a ranker's candidates of one interest group).

        Example:
            >>> att = MultiHeadTargetAttention(8, 6, num_heads=2).eval()
            >>> q, k = torch.randn(5, 8), torch.randn(2, 4, 6)
            >>> m, of = torch.ones(2, 4, dtype=torch.bool), torch.tensor([0, 1, 1, 0, 1])
            >>> torch.allclose(att.forward_shared(q, k, m, of), att(q, k[of], m[of]), atol=1e-6)
            True
        """
        u, t = keys.shape[0], keys.shape[1]
        h, d, nq = self.num_heads, self.head_dim, query.shape[0]
        keys_t = self.k(keys).view(u, t, h, d).permute(0, 2, 3, 1)  # [U, H, d, T]
        values = self.v(keys).view(u, t, h, self.value_dim).transpose(1, 2)  # [U, H, T, dv]
        counts = torch.bincount(key_of, minlength=u) if not tracing() else None
        width = int(counts.max()) if counts is not None and nq else 0
        if counts is None or u * width > SHARED_PADDING_LIMIT * nq + 64:
            # few queries per set, or one set holding most of them: the sets' keys gathered
            # per query ([Q, H, d, T] copies), one small matmul per query
            qh = self.q(query).view(-1, 1, h, d).transpose(1, 2)  # [Q, H, 1, d]
            kh_t, vh = keys_t.contiguous()[key_of], values.contiguous()[key_of]
            return self._attend(qh, kh_t, vh, mask[key_of], None).squeeze(1)
        # the queries of each set side by side in a [U, P] grid (P = most queries of one set):
        # U matmuls of [P, d] x [d, T] per head, no per-query copy of the keys
        order = torch.argsort(key_of, stable=True)
        owner = key_of[order]
        slot = torch.arange(nq, device=query.device) - (torch.cumsum(counts, 0) - counts)[owner]
        projected = self.q(query[order]).view(nq, h, d)  # its dtype: bf16 under autocast
        grid = projected.new_zeros(u, width, h, d)
        grid[owner, slot] = projected
        pooled = self._attend(grid.transpose(1, 2), keys_t, values, mask, None)  # [U, P, H dv]
        out = pooled.new_empty(nq, pooled.shape[-1])
        out[order] = pooled[owner, slot]
        return out

    def _attend(
        self,
        qh: torch.Tensor,
        kh_t: torch.Tensor,
        vh: torch.Tensor,
        mask: torch.Tensor,
        extra_logits: torch.Tensor | None,
    ) -> torch.Tensor:
        """``qh [B, H, C, d]`` over keys ``kh_t [B, H, d, T]`` (transposed) and values
        ``vh [B, H, T, *]`` with ``mask [B, T]`` -> ``[B, C, output_dim]``."""
        b, c = qh.shape[0], qh.shape[2]
        h, d, t = self.num_heads, self.head_dim, kh_t.shape[3]  # H static: loops run over it
        logits = _head_matmul(qh, kh_t, h) / math.sqrt(d)  # [B, H, C, T]
        if extra_logits is not None:  # [B, H, T] (every candidate) or [B, H, C, T]
            logits = logits + extra_logits.reshape(b, h, -1, t)
        valid = mask.unsqueeze(1).unsqueeze(2)  # [B, 1, 1, T]
        logits = logits.masked_fill(~valid, float("-inf"))
        weights = torch.softmax(logits, dim=-1)
        weights = torch.nan_to_num(weights, nan=0.0)  # all-masked rows -> zeros
        weights = self.attention_dropout(weights)
        if tracing():  # heads side by side without a reshape over C (see _head_matmul)
            pooled = torch.cat([torch.bmm(weights[:, i], vh[:, i]) for i in range(h)], dim=-1)
        else:
            pooled = (weights @ vh).transpose(1, 2).reshape(b, c, h * self.value_dim)
        return self.out(pooled) * mask.any(dim=1).view(b, 1, 1).to(pooled.dtype)


def _head_matmul(x: torch.Tensor, y: torch.Tensor, heads: int) -> torch.Tensor:
    """``x [B, H, P, Q] @ y [B, H, Q, R] -> [B, H, P, R]`` (H = ``heads``). While torch traces,
    one ``bmm`` per head (H is static), so that torch.export keeps P (the C candidates) symbolic: the 4-d
    ``@`` and the ``[B, H, C, d] -> [B, C, H * d]`` reshape guard on ``C != 1``. Eagerly the
    4-d ``@``."""
    if not tracing():
        return x @ y
    return torch.stack([torch.bmm(x[:, i], y[:, i]) for i in range(heads)], dim=1)
