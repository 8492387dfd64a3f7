"""TWIN (Chang et al., arXiv 2302.02352): a consistency-preserving GSU, the ESU's own target
attention scoring every behavior, then the ESU over the top K.

Behavior features are split as the paper does:

* inherent item features (the item embedding ``e_i``): projected to keys ``K_h = e_i W_k`` and
  values ``e_i W_v`` once per behavior row (per item, in a deployed system: cacheable);
* user-item cross features (the time interval since the behavior, the behavior type, the numeric
  fields such as play time): reduced to one scalar bias per head, ``beta_i = [t_i, b_i, x_i] w``.

Head h's logit of behavior i for candidate q is ``alpha_i = (K_h_i . q W_q^h) / sqrt(d) +
beta_i^h``. The GSU keeps the K behaviors with the largest mean over heads of ``alpha`` (no
gradient through the choice); the ESU softmaxes exactly those logits over the K and pools the
values, so the GSU and the ESU rank with the same function and the same parameters. Choices the
paper leaves open: the GSU's score is the head mean; the values read the inherent features only.

Shapes: B batch, N jagged rows, K kept, H heads, d = D / H.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from components.encoders.base import (
    EncoderSpec,
    History,
    Query,
    SequenceEncoder,
)
from components.layers.attention_dropout import AttentionDropout
from components.layers.time_buckets import TimeIntervalEmbedding
from components.ops import jagged
from components.ops.retrieval import topk_by_score

# ops imported by name are FX leaves only where this module registers them (torch.fx.wrap
# patches the calling module's globals): the encoder then traces symbolically, op calls as nodes
torch.fx.wrap("topk_by_score")


@dataclass
class TWINConfig:
    """Attributes:
    top_k: K behaviors the GSU passes to the ESU (the paper keeps 100 of 10^4 to 10^5).
    num_heads: H attention heads (shared by the GSU and the ESU).
    time_dim: time-interval embedding fed to the cross-feature bias (0 = off).
    """

    top_k: int = 50
    num_heads: int = 2
    time_dim: int = 8

    def __post_init__(self) -> None:
        if self.top_k < 1 or self.num_heads < 1:
            raise ValueError(
                f"top_k and num_heads must be >= 1, got {self.top_k}, {self.num_heads}"
            )


class TWIN(SequenceEncoder):
    """``(query [B, D], history) -> [B, D]``: the ESU's attention over every behavior picks the
    top K (GSU), the ESU attends over them.

    Example:
        >>> from components.encoders.example_inputs import random_history, random_query
        >>> spec = EncoderSpec(embedding_dim=32, behavior_dim=8, num_numeric=1)
        >>> enc = TWIN(spec)
        >>> enc(random_query(spec, 2), random_history(spec, [500, 30])).shape
        torch.Size([2, 32])
    """

    config_class = TWINConfig

    def __init__(self, spec: EncoderSpec, config: TWINConfig | None = None) -> None:
        super().__init__()
        self.config = config or TWINConfig()
        h = self.config.num_heads
        self.head_dim = max(spec.embedding_dim // h, 1)
        self.q = nn.Linear(spec.embedding_dim, h * self.head_dim, bias=False)
        self.k = nn.Linear(spec.embedding_dim, h * self.head_dim, bias=False)
        self.v = nn.Linear(spec.embedding_dim, h * self.head_dim, bias=False)
        self.time = TimeIntervalEmbedding(self.config.time_dim) if self.config.time_dim else None
        cross_dim = self.config.time_dim + spec.behavior_dim + spec.num_numeric
        self.cross = nn.Linear(cross_dim, h) if cross_dim else None
        self.out = nn.Linear(h * self.head_dim, h * self.head_dim)
        self.output_dim = h * self.head_dim
        self.attention_dropout = AttentionDropout()

    def cross_bias(self, history: History) -> torch.Tensor:
        """``[N, H]`` beta: the user-item cross features of every behavior, one scalar per head."""
        if self.cross is None:
            return history.age.new_zeros(history.item_ids.shape[0], self.config.num_heads)
        parts = []
        if self.time is not None:
            parts.append(self.time(history.age).to(self.out.weight.dtype))
        parts.append(history.behavior_embeddings)
        parts.append(history.numeric.to(self.out.weight.dtype))
        return self.cross(torch.cat(parts, dim=1))

    def _item_side(self, history: History) -> tuple[torch.Tensor, torch.Tensor]:
        """``(keys [N, H, d], values [N, H, d])`` of every behavior, once per row."""
        h, d = self.config.num_heads, self.head_dim
        return self.k(history.embeddings).unflatten(1, (h, d)), self.v(
            history.embeddings
        ).unflatten(1, (h, d))

    def logits(self, queries: torch.Tensor, keys: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """``alpha [..., H]`` of projected queries ``[..., H, d]`` and keys ``[..., H, d]``."""
        return (queries * keys).sum(dim=-1) / math.sqrt(self.head_dim) + bias

    def _esu(
        self,
        queries: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        bias: torch.Tensor,
        index: torch.Tensor,
        mask: torch.Tensor,
    ) -> torch.Tensor:
        """Softmax over the kept rows ``index [M, K]`` of their logits, pooled values -> ``[M, D]``."""
        alpha = self.logits(
            queries.unsqueeze(1),
            jagged.gather_padded(keys, index, mask),
            jagged.gather_padded(bias, index, mask),
        )  # [M, K, H]
        alpha = alpha.masked_fill(~mask.unsqueeze(-1), float("-inf"))
        weights = torch.nan_to_num(torch.softmax(alpha, dim=1), nan=0.0)  # all-masked rows -> 0
        weights = self.attention_dropout(weights)
        pooled = (weights.unsqueeze(-1) * jagged.gather_padded(values, index, mask)).sum(dim=1)
        return self.out(pooled.flatten(1)) * mask.any(dim=1, keepdim=True).to(pooled.dtype)

    def _select(
        self, queries: torch.Tensor, keys: torch.Tensor, bias: torch.Tensor, offsets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        segment = jagged.segment_ids(offsets, keys.shape[0])
        with torch.no_grad():
            scores = self.logits(queries[segment], keys, bias).mean(dim=1)
            return topk_by_score(scores, offsets, self.config.top_k)

    def gsu(self, query: Query, history: History) -> tuple[torch.Tensor, torch.Tensor]:
        """``(index [B, K], mask [B, K])``: the K behaviors with the largest head-mean logit."""
        keys, _ = self._item_side(history)
        queries = self.q(query.embeddings).unflatten(1, (self.config.num_heads, self.head_dim))
        return self._select(queries, keys, self.cross_bias(history), history.offsets)

    def forward(self, query: Query, history: History) -> torch.Tensor:
        keys, values = self._item_side(history)
        bias = self.cross_bias(history)
        queries = self.q(query.embeddings).unflatten(1, (self.config.num_heads, self.head_dim))
        index, mask = self._select(queries, keys, bias, history.offsets)
        return self._esu(queries, keys, values, bias, index, mask)

    def forward_candidates(self, candidates: Query, history: History) -> torch.Tensor:
        """``[B, C, D]``: keys, values and cross biases computed once per user; each candidate
        scores its user's behaviors with one batched product, keeps its top K, and the ESU reads
        only those K rows."""
        b, c = candidates.item_ids.shape
        h, d = self.config.num_heads, self.head_dim
        keys, values = self._item_side(history)
        bias = self.cross_bias(history)
        queries = self.q(candidates.embeddings).unflatten(2, (h, d))  # [B, C, H, d]
        with torch.no_grad():
            padded, valid = jagged.jagged_to_padded(
                torch.cat([keys.flatten(1), bias], dim=1),
                history.offsets,
                max(history.item_ids.numel(), 1),
            )  # [B, T, H * d + H], every row (no cap): keys and biases in one gather
            padded_keys, padded_bias = padded.split([h * d, h], dim=-1)
            # the head mean of alpha in one product: sum_h q_h . k_h / (H sqrt(d)) + mean_h beta
            scores = torch.bmm(queries.flatten(2), padded_keys.transpose(1, 2)) / (h * math.sqrt(d))
            scores = scores + padded_bias.mean(dim=-1).unsqueeze(1)  # [B, C, T]
            # user-major, then candidate, then time: the order of repeat_segments' rows
            scores = scores[valid.unsqueeze(1).expand(b, c, -1)]
            rows, lengths = jagged.repeat_segments(history.offsets, c, history.item_ids.shape[0])
            index, mask = topk_by_score(
                scores, jagged.lengths_to_offsets(lengths), self.config.top_k
            )
            index = jagged.gather_padded(rows, index, mask)  # back to rows of the one history
        flat = queries.flatten(0, 1)
        return self._esu(flat, keys, values, bias, index, mask).unflatten(0, (b, c))
