"""SIM (Pi et al., arXiv 2006.05639): a general search unit picks K behaviors, an exact search
unit attends over them.

* ``SIMHard``: GSU = the K most recent behaviors with the candidate's category (or group).
* ``SIMSoft``: GSU = top-K by the inner product of projected embeddings ``(W_b e_i) . (W_a e_a)``
  (no gradient through the selection). Its parameters are trained by SIM's auxiliary task
  (Eq. 2): ``U_r = sum_i r_i e_i`` over the (most recent ``aux_max_len``) history,
  ``MLP([U_r, e_a]) -> logit``, returned by :meth:`SIMSoft.forward_with_aux`.

ESU (both): multi-head target attention over ``[e_i, time-interval embedding, behavior
embedding]`` of the K selected behaviors. Shapes: B, N jagged rows, K selected, D dims.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from components.encoders.base import (
    EncoderSpec,
    History,
    Query,
    SequenceEncoder,
    flatten_candidates,
    searched_groups,
)
from components.layers.mlp import MLP
from components.layers.target_attention import MultiHeadTargetAttention
from components.layers.time_buckets import TimeIntervalEmbedding
from components.ops import jagged
from components.ops.group_index import build_group_index, lookup_group
from components.ops.retrieval import hard_search, topk_by_score

# ops imported by name are FX leaves only where this module registers them (torch.fx.wrap
# patches the calling module's globals): the encoder then traces symbolically, op calls as nodes
torch.fx.wrap("hard_search")
torch.fx.wrap("topk_by_score")
torch.fx.wrap("lookup_group")
torch.fx.wrap("build_group_index")


@dataclass
class SIMConfig:
    """Attributes:
    top_k: K behaviors kept by the GSU (SIM uses 50).
    search_key: hard search key, ``category`` or ``group``.
    num_heads: ESU heads.
    time_dim: dimension of the time-interval embedding (0 = off).
    aux_max_len: most recent behaviors in SIMSoft's auxiliary task.
    """

    top_k: int = 50
    search_key: str = "category"
    num_heads: int = 2
    time_dim: int = 8
    aux_max_len: int = 1000

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if self.search_key not in ("category", "group"):
            raise ValueError(f"search_key must be 'category' or 'group', got {self.search_key!r}")


class ExactSearchUnit(nn.Module):
    """ESU: target attention over selected rows ``index [B, K]`` of the jagged history."""

    def __init__(self, spec: EncoderSpec, config: SIMConfig) -> None:
        super().__init__()
        self.time = TimeIntervalEmbedding(config.time_dim) if config.time_dim else None
        key_dim = spec.embedding_dim + config.time_dim + spec.behavior_dim
        self.attention = MultiHeadTargetAttention(
            spec.embedding_dim, key_dim, config.num_heads, spec.embedding_dim // config.num_heads
        )
        self.output_dim = self.attention.output_dim

    def forward(
        self,
        query: Query,
        history: History,
        index: torch.Tensor,
        mask: torch.Tensor,
        key_of: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``index``, ``mask [B, K]``: the rows each query attends over; or, with ``key_of
        [B]``, ``[U, K]`` shared row sets, query b reading set ``key_of[b]`` (keys built and
        projected once per set: a ranker's candidates of one category)."""
        # gather the K selected rows first, then build their keys: O(K) per sample, not O(L)
        rows = history.embedding_index(index)  # the same rows, when all N were looked up
        parts = [jagged.gather_padded(history.embeddings, rows, mask)]
        if self.time is not None:
            age = jagged.gather_padded(history.age, index, mask)
            times = self.time(age)  # in the embedding table's dtype (bf16 module: bf16)
            parts.append(times * mask.unsqueeze(-1).to(times.dtype))
        parts.append(jagged.gather_padded(history.behavior_embeddings, rows, mask))
        keys = torch.cat(parts, dim=-1)
        if key_of is not None:
            return self.attention.forward_shared(query.embeddings, keys, mask, key_of)
        return self.attention(query.embeddings, keys, mask)


class SIMHard(SequenceEncoder):
    """``(query [B, D], history) -> [B, D]`` via hard search then ESU.

    Example:
        >>> from components.encoders.example_inputs import random_history, random_query
        >>> spec = EncoderSpec(embedding_dim=32, behavior_dim=8)
        >>> enc = SIMHard(spec)
        >>> enc(random_query(spec, 2), random_history(spec, [500, 30])).shape
        torch.Size([2, 32])
    """

    def __init__(self, spec: EncoderSpec, config: SIMConfig | None = None) -> None:
        super().__init__()
        self.config = config or SIMConfig()
        self.esu = ExactSearchUnit(spec, self.config)
        self.output_dim = self.esu.output_dim

    def _search_keys(self, query: Query, history: History) -> tuple[torch.Tensor, torch.Tensor]:
        """``(key of each behavior [N], key of each candidate)`` by ``config.search_key``."""
        if self.config.search_key == "category":
            return history.category_ids, query.category_ids
        return history.group_ids, searched_groups(query.group_ids)  # group 0: no match

    def _hard_search(self, query: Query, history: History) -> tuple[torch.Tensor, torch.Tensor]:
        keys, wanted = self._search_keys(query, history)
        return hard_search(keys, history.offsets, wanted, self.config.top_k)

    def forward(self, query: Query, history: History) -> torch.Tensor:
        index, mask = self._hard_search(query, history)
        return self.esu(query, history, index, mask)

    def history_rows(self, query: Query, history: History) -> torch.Tensor | None:
        """The K rows the hard search keeps per sample (the ESU reads nothing else)."""
        index, mask = self._hard_search(query, history)
        return index[mask]

    def forward_candidates(self, candidates: Query, history: History) -> torch.Tensor:
        """``[B, C, output_dim]``: the history is indexed by search key once per user
        (O(L log L)); each candidate then finds its K most recent same-key behaviors by binary
        search (O(log L + K)) instead of scanning a copy of the history, as a deployed SIM's
        GSU serves from a per-user category index."""
        b, c = candidates.item_ids.shape
        keys, wanted = self._search_keys(candidates, history)
        users = torch.arange(b, device=keys.device).repeat_interleave(c)
        index, mask, _, _ = lookup_group(
            build_group_index(keys, history.offsets), users, wanted.reshape(-1), self.config.top_k
        )
        return self.esu(flatten_candidates(candidates), history, index, mask).unflatten(0, (b, c))


class SIMSoft(SequenceEncoder):
    """``(query [B, D], history) -> [B, D]`` via inner-product top-K then ESU, + auxiliary task.

    Example:
        >>> from components.encoders.example_inputs import random_history, random_query
        >>> spec = EncoderSpec(embedding_dim=32, behavior_dim=8)
        >>> enc = SIMSoft(spec)
        >>> interest, aux = enc.forward_with_aux(random_query(spec, 2), random_history(spec, [9, 4]))
        >>> interest.shape, {name: logits.shape for name, logits in aux.items()}
        (torch.Size([2, 32]), {'sim_soft_gsu': torch.Size([2])})
    """

    def __init__(self, spec: EncoderSpec, config: SIMConfig | None = None) -> None:
        super().__init__()
        self.config = config or SIMConfig()
        d = spec.embedding_dim
        self.project_behavior = nn.Linear(d, d, bias=False)
        self.project_query = nn.Linear(d, d, bias=False)
        self.aux_mlp = MLP(2 * d, [64, 1])
        self.esu = ExactSearchUnit(spec, self.config)
        self.output_dim = self.esu.output_dim

    def relevance(self, query: Query, history: History) -> torch.Tensor:
        """``[N]`` soft-search score r_i of every behavior for its own sample's candidate."""
        segment = jagged.segment_ids(history.offsets, history.embeddings.shape[0])
        q = self.project_query(query.embeddings)[segment]
        return (self.project_behavior(history.embeddings) * q).sum(dim=1)

    def forward_with_aux(
        self, query: Query, history: History
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        scores = self.relevance(query, history)
        index, mask = topk_by_score(scores.detach(), history.offsets, self.config.top_k)
        interest = self.esu(query, history, index, mask)
        # auxiliary CTR task on the long history (SIM Eq. 2), most recent aux_max_len rows
        recent, recent_mask = jagged.jagged_to_padded(
            torch.cat([history.embeddings, scores.unsqueeze(1)], dim=1),
            history.offsets,
            self.config.aux_max_len,
        )
        weights = recent[..., -1] * recent_mask
        pooled = (weights.unsqueeze(-1) * recent[..., :-1]).sum(dim=1)
        aux = self.aux_mlp(torch.cat([pooled, query.embeddings], dim=1)).squeeze(1)
        return interest, {"sim_soft_gsu": aux}

    def forward(self, query: Query, history: History) -> torch.Tensor:
        return self.forward_with_aux(query, history)[0]

    def forward_candidates(self, candidates: Query, history: History) -> torch.Tensor:
        """``[B, C, output_dim]``: behaviors are projected once per user; each candidate's
        inner-product scores over its user's projected behaviors pick its top-K for the ESU
        (no auxiliary task at serving time)."""
        b, c = candidates.item_ids.shape
        flat = flatten_candidates(candidates)
        rows, lengths = jagged.repeat_segments(history.offsets, c, history.item_ids.shape[0])
        behaviors, valid = jagged.jagged_to_padded(
            self.project_behavior(history.embeddings),
            history.offsets,
            max(history.item_ids.numel(), 1),  # no cap: T is the longest history
        )  # [B, T, D] projected once per user, left-aligned
        queries = self.project_query(candidates.embeddings)  # [B, C, D]
        scores = torch.bmm(queries, behaviors.transpose(1, 2))  # [B, C, T]
        # user-major, then candidate, then time: the order of repeat_segments' rows
        scores = scores[valid.unsqueeze(1).expand(b, c, -1)]  # [C * N]
        index, mask = topk_by_score(
            scores.detach(), jagged.lengths_to_offsets(lengths), self.config.top_k
        )
        index = jagged.gather_padded(rows, index, mask)  # back to rows of the one history
        return self.esu(flat, history, index, mask).unflatten(0, (b, c))
