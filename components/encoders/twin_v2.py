"""TWIN-V2 (Si et al., arXiv 2407.16357): the lifelong history compressed by hierarchical
clustering per user, then cluster-aware target attention over the clusters.

Each user's behaviors are clustered hierarchically by their item embeddings
(:func:`components.ops.clustering.hierarchical_clusters`: k-means into ``k1`` clusters, each
split again into ``k2``, ...; no gradient through the assignment). A cluster becomes one
"virtual behavior": the mean of its items' embeddings (gradients flow to every member), the mean
of their behavior-type embeddings, its size n and its recency (the age of its newest member,
as a time-interval embedding). The candidate attends over the clusters with multi-head target
attention whose logits add ``ln n`` (cluster-aware: a cluster of n alike items weighs as the n
items would under a plain attention over them).

What the clustering reads: the frozen content embeddings when :meth:`TWINV2.load_content` gave
them (the paper clusters multimodal item embeddings, as DMGIN's groups do), otherwise the
current item ID embeddings, detached. Content is projected once, in ``load_content``, onto its
top ``cluster_dim`` principal components: every k-means pass over a batch then reads
``cluster_dim`` floats per behavior instead of the content's width (384 for MiniLM), which is
what made the per-step clustering the whole cost of a training step; distances in the projected
space equal those in the full one when the content has rank <= ``cluster_dim`` and approximate
them otherwise (the components hold most of the variance of text embeddings). Choices the paper leaves open, written down: a fixed
branching (default 8 x 8 = at most 64 clusters per user) instead of splitting until a size
threshold; deterministic k-means (initial centroids evenly spaced in time, 4 Lloyd iterations);
with at most 64 clusters the ESU attends over all of them, so the paper's GSU over clusters
(top-K of thousands) is not needed at these sizes.

Shapes: B batch, N jagged rows, M = prod(branching) cluster slots per user, D dims.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from components.encoders.base import EncoderSpec, History, Query, SequenceEncoder
from components.layers.target_attention import MultiHeadTargetAttention
from components.layers.time_buckets import TimeIntervalEmbedding
from components.ops import jagged
from components.ops.clustering import hierarchical_clusters, principal_projection
from components.ops.symbolic import bincount

# ops imported by name are FX leaves only where this module registers them (torch.fx.wrap
# patches the calling module's globals): the encoder then traces symbolically, op calls as nodes
torch.fx.wrap("hierarchical_clusters")
torch.fx.wrap("bincount")


@dataclass
class TWINV2Config:
    """Attributes:
    branching: clusters per level of the hierarchy, e.g. ``[8, 8]``: 64 cluster slots per user.
    kmeans_iterations: Lloyd iterations at every level.
    num_heads: attention heads.
    time_dim: time-interval embedding of a cluster's recency (0 = off).
    size_bias: add ``ln(cluster size)`` to the attention logits (the paper's cluster-aware
        attention; off = plain attention over cluster means).
    cluster_dim: loaded content is projected onto its top ``cluster_dim`` principal components
        before clustering (0 = cluster on the full content; content no wider is kept as it is).
    """

    branching: tuple[int, ...] = (8, 8)
    kmeans_iterations: int = 4
    num_heads: int = 2
    time_dim: int = 8
    size_bias: bool = True
    cluster_dim: int = 32

    def __post_init__(self) -> None:
        self.branching = tuple(int(k) for k in self.branching)
        if not self.branching or min(self.branching) < 1:
            raise ValueError(f"branching must be sizes >= 1, got {self.branching}")
        if self.kmeans_iterations < 0 or self.num_heads < 1:
            raise ValueError("kmeans_iterations must be >= 0 and num_heads >= 1")
        if self.cluster_dim < 0:
            raise ValueError(f"cluster_dim must be >= 0, got {self.cluster_dim}")


@dataclass
class UserClusters:
    """One user's (or a batch's) clusters, the candidate-independent state.

    Attributes:
        keys: ``[B, M, D + time_dim + D_b]`` cluster mean embedding, recency embedding, mean
            behavior embedding. sizes: ``[B, M]`` int64 members (0 = empty slot).
    """

    keys: torch.Tensor
    sizes: torch.Tensor


class TWINV2(SequenceEncoder):
    """``(query [B, D], history) -> [B, D]``: cluster-aware target attention over per-user
    hierarchical clusters of the history.

    Example:
        >>> from components.encoders.example_inputs import random_history, random_query
        >>> spec = EncoderSpec(embedding_dim=32, behavior_dim=8)
        >>> enc = TWINV2(spec)
        >>> enc(random_query(spec, 2), random_history(spec, [500, 30])).shape
        torch.Size([2, 32])
    """

    config_class = TWINV2Config

    def __init__(self, spec: EncoderSpec, config: TWINV2Config | None = None) -> None:
        super().__init__()
        self.config = config or TWINV2Config()
        cfg = self.config
        self.num_clusters = math.prod(cfg.branching)
        self.time = TimeIntervalEmbedding(cfg.time_dim) if cfg.time_dim else None
        key_dim = spec.embedding_dim + cfg.time_dim + spec.behavior_dim
        self.attention = MultiHeadTargetAttention(
            spec.embedding_dim, key_dim, cfg.num_heads, max(spec.embedding_dim // cfg.num_heads, 1)
        )
        self.output_dim = self.attention.output_dim
        self.register_buffer("content", torch.zeros(0, 0), persistent=True)  # saved with the model

    def load_content(self, content: torch.Tensor) -> None:
        """Cluster on frozen content embeddings ``[num_items, Dc]`` (row = item index), kept
        as their projection onto the top ``cluster_dim`` principal components."""
        if content.dim() != 2:
            raise ValueError(f"content must be [num_items, Dc], got {tuple(content.shape)}")
        self.content = principal_projection(content.detach(), self.config.cluster_dim)

    def cluster_ids(self, history: History) -> torch.Tensor:
        """``[N]`` int64 cluster slot in ``[0, M)`` of every behavior within its user."""
        if self.content.numel():
            points = self.content[history.item_ids]
        else:
            points = history.embeddings.detach()
        return hierarchical_clusters(
            points, history.offsets, self.config.branching, self.config.kmeans_iterations
        )

    def user_clusters(self, history: History) -> UserClusters:
        """The clusters of every user's history (computed once per user)."""
        n, batch, m = history.item_ids.shape[0], history.offsets.numel() - 1, self.num_clusters
        user = jagged.segment_ids(history.offsets, n)
        slot = user * m + self.cluster_ids(history)
        sizes = bincount(slot, batch * m)
        scale = 1.0 / sizes.clamp(min=1).to(history.embeddings.dtype).unsqueeze(1)

        def mean(values: torch.Tensor) -> torch.Tensor:
            sums = values.new_zeros(batch * m, values.shape[1]).index_add(0, slot, values)
            return sums * scale.to(values.dtype)

        parts = [mean(history.embeddings)]
        if self.time is not None:
            newest = torch.full((batch * m,), float("inf"), device=history.age.device)
            newest = newest.scatter_reduce(0, slot, history.age.float(), "amin")
            newest = torch.where(sizes > 0, newest, torch.zeros_like(newest))
            parts.append(self.time(newest).to(history.embeddings.dtype))
        parts.append(mean(history.behavior_embeddings))
        keys = torch.cat(parts, dim=1).view(batch, m, -1)
        return UserClusters(keys=keys, sizes=sizes.view(batch, m))

    def attend(self, clusters: UserClusters, queries: torch.Tensor) -> torch.Tensor:
        """Candidates ``[B, D]`` or ``[B, C, D]`` over their user's clusters."""
        mask = clusters.sizes > 0
        extra = None
        if self.config.size_bias:
            log_size = torch.log(clusters.sizes.clamp(min=1).to(queries.dtype))
            extra = log_size.unsqueeze(1).expand(-1, self.config.num_heads, -1)  # [B, H, M]
        return self.attention(queries, clusters.keys, mask, extra)

    def forward(self, query: Query, history: History) -> torch.Tensor:
        return self.attend(self.user_clusters(history), query.embeddings)

    def forward_candidates(self, candidates: Query, history: History) -> torch.Tensor:
        """``[B, C, D]``: the clusters once per user (the paper's offline part), then one
        attention over at most M clusters per candidate."""
        return self.attend(self.user_clusters(history), candidates.embeddings)
