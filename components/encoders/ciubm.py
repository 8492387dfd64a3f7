"""CiUBM: content-interest-aware user behavior modeling (after MIM, arXiv 2502.00321).

MIM names the module and its goal (fuse frozen multimodal content embeddings, aligned to user
interest by C-SFT, with ID embeddings inside behavior modeling) but does not publish its
internals. What is from where:

* from MIM: frozen content vectors (no gradient, served from a "representation center"),
  content similarity between the candidate and each behavior, fusion with ID signals;
* from MUSE (arXiv 2512.07216, also Taobao): SimTier (histogram of the similarities over
  [-1, 1], ``log1p(count)`` times a learned vector per bin) and SA-TA target attention with
  logits ``a = g1 * a_ID + g2 * r + g3 * (a_ID * r)`` (learned g), and top-K by content cosine
  as the retrieval step for long histories;
* our choices: the histogram is taken over the whole history by default (O(L), cheap) while the
  attention sees only the top-K; g initialized to (1, 1, 0); the attention keys/values are the ID
  embeddings (plus behavior-type embeddings when ``spec.behavior_dim > 0``); the parts are
  concatenated and passed through an MLP; a sample with an empty history gets a zero attention
  vector.

Shapes: B batch, N jagged behaviors, K kept behaviors per sample, D ID embedding dim,
d content dim, A attention dim.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from components.encoders.base import (
    EncoderSpec,
    History,
    Query,
    SequenceEncoder,
    flatten_candidates,
)
from components.layers.attention_dropout import AttentionDropout
from components.layers.mlp import MLP
from components.ops import jagged
from components.ops.retrieval import topk_by_score
from components.ops.symbolic import tracing, value_max

# an op imported by name is an FX leaf only where this module registers it (torch.fx.wrap)
torch.fx.wrap("topk_by_score")


@dataclass
class CiUBMConfig:
    """Attributes:
    top_k: behaviors kept per sample by content cosine before the attention (None = all).
    use_histogram: SimTier-style similarity histogram.
    histogram_over_topk: histogram over the top-K only (MUSE) instead of the whole history.
    num_bins / bin_dim: histogram bins over [-1, 1] and the learned vector size per bin.
    use_attention: SA-TA target attention over the kept behaviors.
    content_in_attention: mix content similarity into the attention logits (False = plain ID
        target attention, for ablation).
    attention_dim: A (default D).
    output_hidden: MLP over the concatenated parts (empty = no MLP, concatenation is output).
    """

    top_k: int | None = 50
    use_histogram: bool = True
    histogram_over_topk: bool = False
    num_bins: int = 20
    bin_dim: int = 8
    use_attention: bool = True
    content_in_attention: bool = True
    attention_dim: int | None = None
    output_hidden: tuple[int, ...] = (64,)


#: rows of ``[rows, d]`` content gathered at a time by :func:`content_similarity` (~2**24 floats)
SIMILARITY_CHUNK_ELEMENTS = 1 << 24


def content_similarity(
    table: torch.Tensor,
    query_ids: torch.Tensor,
    history_ids: torch.Tensor,
    offsets: torch.Tensor,
    chunk_rows: int | None = None,
) -> torch.Tensor:
    """Cosine between each behavior's content and its sample's candidate's content, no gradient.

    ``table [I, d]``, ``query_ids [B]``, ``history_ids [N]`` (rows of the table), ``offsets [B + 1]``
    -> ``[N]``; an all-zero content row gives 0. The behaviors' content is gathered
    ``chunk_rows`` rows at a time (default: about 2**24 floats per chunk), so the transient
    memory is bounded by the chunk, not by N * d: an eval batch of 4096 long histories with
    d = 384 would otherwise gather several GiB. :func:`content_similarity_reference` is the
    one-shot twin.

    Example:
        >>> table = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])
        >>> content_similarity(table, torch.tensor([0, 1]), torch.tensor([0, 1, 2]),
        ...                    torch.tensor([0, 2, 3]))
        tensor([1.0000, 0.0000, 0.7071])
    """
    with torch.no_grad():
        d = max(table.shape[-1], 1)
        chunk = chunk_rows or max(1, SIMILARITY_CHUNK_ELEMENTS // d)
        query = F.normalize(table[query_ids], dim=-1)  # [B, d]
        if tracing():  # one chunk: a loop over a symbolic N would fix N to the example's
            rows = table[history_ids]
            dots = (rows * query[jagged.segment_ids(offsets, history_ids.numel())]).sum(dim=-1)
            return dots / rows.norm(dim=-1).clamp_min(1e-12)
        segment = jagged.segment_ids(offsets, history_ids.numel())  # [N]
        out = torch.empty(history_ids.numel(), dtype=table.dtype, device=table.device)
        for start in range(0, history_ids.numel(), chunk):
            rows = table[history_ids[start : start + chunk]]  # [chunk, d]
            dots = (rows * query[segment[start : start + chunk]]).sum(dim=-1)
            out[start : start + chunk] = dots / rows.norm(dim=-1).clamp_min(1e-12)
        return out


def content_similarity_reference(
    table: torch.Tensor, query_ids: torch.Tensor, history_ids: torch.Tensor, lengths: torch.Tensor
) -> torch.Tensor:
    """One-shot twin of :func:`content_similarity` (gathers all ``[N, d]`` at once)."""
    segment = torch.repeat_interleave(torch.arange(lengths.numel(), device=lengths.device), lengths)
    q = F.normalize(table[query_ids], dim=-1)[segment]
    return (F.normalize(table[history_ids], dim=-1) * q).sum(dim=-1)


def masked_topk(
    scores: torch.Tensor, offsets: torch.Tensor, k: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample, the (up to) k highest-scoring rows of a jagged ``scores [N]``.

    Returns ``index [B, K]`` (global rows into N; 0 where masked) and ``mask [B, K]`` bool, with
    K = min(k, longest history); ``k=None`` keeps every row in time order.

    Example:
        >>> index, mask = masked_topk(torch.tensor([0.1, 0.9, 0.5]), torch.tensor([0, 2, 3]), 1)
        >>> index.tolist(), mask.tolist()
        ([[1], [2]], [[True], [True]])
    """
    lengths = offsets[1:] - offsets[:-1]
    n = scores.numel()
    if tracing():  # a bounded symbol, not a Python int
        longest = value_max(lengths, upper=n)
    else:
        longest = int(lengths.max()) if lengths.numel() else 0
    position = torch.arange(longest, device=scores.device)
    valid = position[None, :] < lengths[:, None]
    rows = (offsets[:-1, None] + position[None, :]).clamp(max=torch.sym_max(n - 1, 0))
    if k is None or k >= longest:
        return torch.where(valid, rows, 0), valid
    padded = torch.where(valid, scores[rows], float("-inf"))
    arg = padded.topk(k, dim=1).indices
    mask = valid.gather(1, arg)
    return torch.where(mask, rows.gather(1, arg), 0), mask


torch.fx.wrap("masked_topk")  # k and the lengths size its output


def masked_topk_reference(scores: torch.Tensor, offsets: torch.Tensor, k: int) -> list[list[int]]:
    """Per-sample sort twin of :func:`masked_topk`: the kept global rows of each sample."""
    out = []
    for b in range(offsets.numel() - 1):
        start, end = int(offsets[b]), int(offsets[b + 1])
        order = sorted(range(start, end), key=lambda i: -float(scores[i]))
        out.append(order[:k])
    return out


def _select_topk(scores: torch.Tensor, offsets: torch.Tensor, k: int | None):
    """The shared op :func:`components.ops.retrieval.topk_by_score`, or :func:`masked_topk`
    over every behavior when ``k`` is None."""
    if k is not None:
        return topk_by_score(scores, offsets, k)
    return masked_topk(scores, offsets, k)


class SimilarityHistogram(nn.Module):
    """SimTier: ``r [N]`` in [-1, 1] grouped by sample -> ``[B, num_bins * bin_dim]``, each bin's
    ``log1p(count)`` times a learned bin vector.

    Example:
        >>> h = SimilarityHistogram(num_bins=4, bin_dim=2)
        >>> h(torch.tensor([0.9, -0.9, 0.8]), torch.tensor([2, 1])).shape
        torch.Size([2, 8])
    """

    def __init__(self, num_bins: int = 20, bin_dim: int = 8) -> None:
        super().__init__()
        self.num_bins = num_bins
        self.bin_vectors = nn.Parameter(torch.randn(num_bins, bin_dim) * 0.1)
        self.output_dim = num_bins * bin_dim

    def counts(self, similarity: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``[N], [B] -> [B, num_bins]`` float counts."""
        segment = jagged.segment_ids(jagged.lengths_to_offsets(lengths), similarity.numel())
        bins = ((similarity + 1.0) * (self.num_bins / 2.0)).floor().long()
        bins = bins.clamp(0, self.num_bins - 1)
        counts = torch.zeros(lengths.numel() * self.num_bins, device=similarity.device)
        ones = torch.ones_like(similarity, dtype=counts.dtype)  # float32 counts, also under bf16
        counts.index_add_(0, segment * self.num_bins + bins, ones)
        return counts.view(lengths.numel(), self.num_bins)

    def forward(self, similarity: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        weights = torch.log1p(self.counts(similarity, lengths)).to(self.bin_vectors.dtype)
        return (weights[:, :, None] * self.bin_vectors[None]).flatten(1)


def histogram_counts_reference(similarity: torch.Tensor, lengths: torch.Tensor, num_bins: int):
    """Loop twin of :meth:`SimilarityHistogram.counts` (bin = floor((r+1)/2 * bins), clamped)."""
    out = torch.zeros(lengths.numel(), num_bins)
    start = 0
    for b, n in enumerate(lengths.tolist()):
        for r in similarity[start : start + n].tolist():
            out[b, min(max(math.floor((r + 1.0) * num_bins / 2.0), 0), num_bins - 1)] += 1
        start += n
    return out


class ContentAwareTargetAttention(nn.Module):
    """SA-TA: ``query [B, Dq]``, ``keys [B, K, Dk]``, ``similarity [B, K]``, ``mask [B, K]`` ->
    ``[B, A]``; logits ``g1 * a_ID + g2 * r + g3 * a_ID * r`` (or ``a_ID`` alone when
    ``use_content`` is False), masked softmax, weighted sum of ``keys W_v``.

    Example:
        >>> att = ContentAwareTargetAttention(8, 8, 4)
        >>> att(torch.randn(2, 8), torch.randn(2, 3, 8), torch.rand(2, 3),
        ...     torch.ones(2, 3, dtype=torch.bool)).shape
        torch.Size([2, 4])
    """

    def __init__(self, query_dim: int, key_dim: int, attention_dim: int, use_content: bool = True):
        super().__init__()
        self.q = nn.Linear(query_dim, attention_dim, bias=False)
        self.k = nn.Linear(key_dim, attention_dim, bias=False)
        self.v = nn.Linear(key_dim, attention_dim, bias=False)
        self.use_content = use_content
        self.gamma = nn.Parameter(torch.tensor([1.0, 1.0, 0.0]))
        self.scale = 1.0 / math.sqrt(attention_dim)
        self.attention_dropout = AttentionDropout()

    def forward(self, query, keys, similarity, mask) -> torch.Tensor:
        id_logits = torch.einsum("bka,ba->bk", self.k(keys), self.q(query)) * self.scale
        logits = id_logits
        if self.use_content:
            g = self.gamma
            logits = g[0] * id_logits + g[1] * similarity + g[2] * id_logits * similarity
        logits = logits.masked_fill(~mask, float("-inf"))
        weights = torch.softmax(logits, dim=1)
        weights = torch.where(mask, weights, torch.zeros_like(weights))  # empty rows: 0, not NaN
        weights = self.attention_dropout(weights)
        return torch.einsum("bk,bka->ba", weights, self.v(keys))


class CiUBM(SequenceEncoder):
    """Content-interest-aware behavior encoder: ``forward(query, history) -> [B, output_dim]``.

    The frozen content table ``[num_items, d]`` (row = item index, e.g. C-SFT's
    ``content/aligned.npy``) is a persistent buffer: saved in the state dict, never a parameter,
    never given gradient or optimizer state. Pass it to the constructor or to
    :meth:`load_content`.

    Example:
        >>> from components.encoders.example_inputs import random_history, random_query
        >>> spec = EncoderSpec(embedding_dim=16)
        >>> enc = CiUBM(spec, CiUBMConfig(top_k=4), content_embeddings=torch.randn(1000, 32))
        >>> interest = enc(random_query(spec, 2), random_history(spec, [12, 7]))
        >>> interest.shape == (2, enc.output_dim)
        True
    """

    def __init__(
        self,
        spec: EncoderSpec,
        config: CiUBMConfig | None = None,
        content_embeddings: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.config = config = config or CiUBMConfig()
        if not (config.use_histogram or config.use_attention):
            raise ValueError("CiUBM needs use_histogram or use_attention")
        self.register_buffer("content", torch.zeros(0, 0), persistent=True)
        if content_embeddings is not None:
            self.load_content(content_embeddings)
        parts = 0
        self.histogram = None
        if config.use_histogram:
            self.histogram = SimilarityHistogram(config.num_bins, config.bin_dim)
            parts += self.histogram.output_dim
        self.attention = None
        self.behavior_dim = spec.behavior_dim  # static: forward never reads it off a tensor
        if config.use_attention:
            attention_dim = config.attention_dim or spec.embedding_dim
            self.attention = ContentAwareTargetAttention(
                spec.embedding_dim,
                spec.embedding_dim + spec.behavior_dim,
                attention_dim,
                use_content=config.content_in_attention,
            )
            parts += attention_dim
        self.output_mlp = MLP(parts, list(config.output_hidden)) if config.output_hidden else None
        self.output_dim = self.output_mlp.output_dim if self.output_mlp else parts

    def load_content(self, table: torch.Tensor) -> None:
        """Install the frozen content table ``[num_items, d]`` (copied, detached, float32)."""
        if table.dim() != 2:
            raise ValueError(f"content table must be [num_items, d], got {tuple(table.shape)}")
        self.content = table.detach().to(torch.float32).clone()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # an encoder built without a table takes the checkpoint's table shape
        saved = state_dict.get(prefix + "content")
        if saved is not None and self.content.numel() == 0:
            self.content = torch.empty_like(saved, dtype=torch.float32)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, query: Query, history: History) -> torch.Tensor:
        self._check_content()
        similarity = content_similarity(
            self.content, query.item_ids, history.item_ids, history.offsets
        )  # [N]
        return self._from_similarity(query, history, similarity, history.offsets, None)

    def history_rows(self, query: Query, history: History) -> torch.Tensor | None:
        """The top-K rows by content similarity (the attention's keys); none at all without
        the attention (the histogram reads similarities only); None (all) when K is None."""
        if self.attention is None:
            return history.offsets.new_zeros(0)
        if self.config.top_k is None:
            return None
        self._check_content()
        similarity = content_similarity(
            self.content, query.item_ids, history.item_ids, history.offsets
        )
        index, mask = _select_topk(similarity, history.offsets, self.config.top_k)
        return index[mask]

    def forward_candidates(self, candidates: Query, history: History) -> torch.Tensor:
        """``[B, C, output_dim]``: the content similarity of every (candidate, behavior) pair
        comes from item ids alone, so the history's embeddings are never copied per candidate;
        each candidate's attention gathers its K rows from the one history."""
        self._check_content()
        b, c = candidates.item_ids.shape
        flat = flatten_candidates(candidates)
        rows, lengths = jagged.repeat_segments(
            history.offsets, c, history.item_ids.shape[0]
        )  # [C * N] pairs, user-major
        offsets = jagged.lengths_to_offsets(lengths)
        similarity = content_similarity(
            self.content, flat.item_ids, history.item_ids[rows], offsets
        )
        return self._from_similarity(flat, history, similarity, offsets, rows).unflatten(0, (b, c))

    def _check_content(self) -> None:
        if self.content.numel() == 0:
            raise RuntimeError(
                "CiUBM has no content table: pass content_embeddings or call load_content"
            )

    def _from_similarity(
        self,
        query: Query,
        history: History,
        similarity: torch.Tensor,
        offsets: torch.Tensor,
        history_rows: torch.Tensor | None,
    ) -> torch.Tensor:
        """``similarity [M]`` jagged by ``offsets`` (one segment per query row) -> interest.
        ``history_rows [M]`` maps each similarity row to its history row (None: the same)."""
        lengths = offsets[1:] - offsets[:-1]
        need_topk = self.attention is not None or self.config.histogram_over_topk
        if need_topk:
            index, mask = _select_topk(similarity, offsets, self.config.top_k)  # [Q, K]
        parts = []
        if self.histogram is not None:
            if self.config.histogram_over_topk:
                # row-major selection keeps each sample's kept rows together
                kept = jagged.gather_padded(similarity, index, mask)
                parts.append(self.histogram(kept[mask], mask.sum(dim=1)))
            else:
                parts.append(self.histogram(similarity, lengths))
        if self.attention is not None:
            keys = history.embeddings
            if self.behavior_dim > 0:
                keys = torch.cat([keys, history.behavior_embeddings], dim=-1)
            key_index = index
            if history_rows is not None:  # back to rows of the one history
                key_index = jagged.gather_padded(history_rows, index, mask)
            kept_keys = jagged.gather_padded(keys, history.embedding_index(key_index), mask)
            kept_similarity = jagged.gather_padded(similarity, index, mask)
            parts.append(self.attention(query.embeddings, kept_keys, kept_similarity, mask))
        out = torch.cat(parts, dim=-1)
        return self.output_mlp(out) if self.output_mlp is not None else out
