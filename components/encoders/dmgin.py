"""DMGIN: Deep Multimodal Group Interest Network (Wei et al., arXiv 2508.21801, AAAI-26).

A lifelong history of N behaviors is compressed into at most G interest groups (the behaviors'
``group_ids``: K-means clusters of multimodal item embeddings in the paper, or category / item
id, DGIN's variant), the G most recently active kept, oldest -> newest:

1. IGIEM: per-group interest statistics (counts per behavior type, recency, span, share of the
   history, mean/max numeric fields) -> MLP, and an intra-group transformer over the group's M
   most recent behaviors, masked mean-pooled; with a learned group-id embedding they make the
   group vector.
2. TGETM: stacked HSTU layers over the time-ordered group vectors with a relative position +
   time-gap bias. Candidate independent: :meth:`DMGIN.encode_user` computes it once per user.
3. CAGAM: multi-head target attention from the candidate over the evolved group vectors.
4. Target-group attention (from DGIN, arXiv 2311.10764): attention from the candidate over the
   most recent behaviors that share its group, plus log1p of how many there are.
5. Target-item statistics (optional, ``use_target_item_statistics``): the same statistics over
   the history's behaviors on the candidate item itself (how often, with which outcome, how
   recently this user met it). Content groups pool hundreds of items; where the label is the
   user's past outcome on the same item (repeat consumption), this keeps that signal exact.

Group id 0 is no group (``components.encoders.base.NO_GROUP``): its behaviors take no group
slot, and a candidate of group 0 has no same-group behaviors.

Grouping is O(N); everything after it costs O(G*M) per user plus O(K) per candidate.
Shapes: B users, N jagged behaviors, G groups, M behaviors per group, C candidates, D dims.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from components.encoders.base import (
    NO_GROUP,
    EncoderSpec,
    History,
    Query,
    SequenceEncoder,
    embedding_index,
    searched_groups,
)
from components.layers.hstu import HSTULayer
from components.layers.mlp import MLP
from components.layers.self_attention import SelfAttentionBlock, masked_mean
from components.layers.target_attention import MultiHeadTargetAttention
from components.ops import jagged
from components.ops.group_index import GroupIndex, build_group_index, lookup_group
from components.ops.grouping import (
    SECONDS_PER_DAY,
    GroupedBehaviors,
    group_behaviors,
    group_stats_dim,
)
from components.ops.retrieval import hard_search
from components.ops.symbolic import tracing

# ops imported by name are FX leaves only where this module registers them (torch.fx.wrap
# patches the calling module's globals): the encoder then traces symbolically, op calls as nodes
torch.fx.wrap("hard_search")
torch.fx.wrap("lookup_group")
torch.fx.wrap("build_group_index")
torch.fx.wrap("group_behaviors")
torch.fx.wrap("embedding_index")


@dataclass
class DMGINConfig:
    """Attributes:
    max_groups: G, most recently active groups kept.
    max_per_group: M, most recent behaviors kept per group.
    hidden_dim: width of behavior, group and HSTU representations.
    num_heads: heads of every attention.
    hstu_layers: depth of the inter-group HSTU stack.
    causal: HSTU mask (newer groups attend to older ones only).
    target_group_max_len: K, behaviors of the candidate's group attended.
    dropout: dropout in the transformer blocks.
    use_statistics, use_intra_group_transformer, use_group_embedding, use_hstu,
    use_target_group_statistics: statistics of ALL the history's behaviors in the candidate's
        group (log1p count per behavior type, mean of each numeric field, log1p days since the
        most recent one): DGIN's per-key statistics, computed per candidate in O(N).
    use_group_attention, use_target_group_attention: ablation switches.
    use_target_item_statistics: the same statistics over the history's behaviors on the
        candidate item itself (item id 0, unknown, matches none). Off by default: the paper
        reads groups only; ``docs/benchmarks.md`` measures it on valid per dataset.
    """

    max_groups: int = 64
    max_per_group: int = 16
    hidden_dim: int = 32
    num_heads: int = 2
    hstu_layers: int = 2
    causal: bool = True
    target_group_max_len: int = 50
    dropout: float = 0.0
    use_statistics: bool = True
    use_intra_group_transformer: bool = True
    use_group_embedding: bool = True
    use_hstu: bool = True
    use_group_attention: bool = True
    use_target_group_attention: bool = True
    use_target_group_statistics: bool = True
    use_target_item_statistics: bool = False

    def __post_init__(self) -> None:
        if min(self.max_groups, self.max_per_group, self.hidden_dim, self.target_group_max_len) < 1:
            raise ValueError(
                "max_groups, max_per_group, hidden_dim, target_group_max_len must be >= 1"
            )
        if not (
            self.use_group_attention
            or self.use_target_group_attention
            or self.use_target_group_statistics
            or self.use_target_item_statistics
        ):
            raise ValueError(
                "DMGIN needs use_group_attention, use_target_group_attention, "
                "use_target_group_statistics or use_target_item_statistics"
            )
        if self.use_group_attention and not (
            self.use_statistics or self.use_intra_group_transformer or self.use_group_embedding
        ):
            raise ValueError(
                "group attention needs statistics, intra-group transformer or group embedding"
            )


@dataclass
class DMGINUserState:
    """Candidate-independent state of B users (what a server caches per request).

    Attributes:
        groups: ``[B, G, H]`` evolved group vectors.
        group_mask: ``[B, G]``.
        embeddings: ``[N, D]`` behavior embeddings (projected lazily: only the rows the
            target-group attention reads).
        behavior_embeddings: ``[N, D_b]`` behavior-type embeddings.
        group_ids: ``[N]`` group of each behavior.
        item_ids: ``[N]`` item of each behavior (the candidate's-item statistics).
        offsets: ``[B + 1]`` jagged offsets of the N rows.
        behavior_ids: ``[N]`` behavior type of each behavior.
        age: ``[N]`` seconds before the query time.
        numeric: ``[N, F]`` numeric fields.
        group_index: behaviors sorted by (user, group), built on the first multi-candidate
            :meth:`DMGIN.score_candidates` and reused by later ones (O(log L + K) per candidate).
        group_tables: per (user, group) segment of ``group_index``: counts per behavior type,
            numeric sums and newest age (for the candidate's-group statistics), built likewise.
        target_rows: ``(index [B, K], mask [B, K], features [B, K, H])`` of one known candidate
            per user, gathered together with the group slots (set only inside
            :meth:`DMGIN.forward`).
        embedding_rows: the history's, when only the rows DMGIN reads were looked up
            (``embeddings`` then holds those rows; see :class:`History`).
        item_index, item_tables: ``group_index`` and ``group_tables`` keyed by item id instead
            of group (the candidate's-item statistics), built on first use likewise.
    """

    groups: torch.Tensor
    group_mask: torch.Tensor
    embeddings: torch.Tensor
    behavior_embeddings: torch.Tensor
    group_ids: torch.Tensor
    item_ids: torch.Tensor
    offsets: torch.Tensor
    behavior_ids: torch.Tensor
    age: torch.Tensor
    numeric: torch.Tensor
    group_index: GroupIndex | None = None
    group_tables: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
    target_rows: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
    embedding_rows: torch.Tensor | None = None
    item_index: GroupIndex | None = None
    item_tables: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None


class DMGIN(SequenceEncoder):
    """``(query [B, D], history N rows) -> [B, output_dim]``.

    Example:
        >>> from components.encoders.example_inputs import random_history, random_query
        >>> spec = EncoderSpec(embedding_dim=32, behavior_dim=8, num_behaviors=5, num_groups=100)
        >>> enc = DMGIN(spec, DMGINConfig(max_groups=16, max_per_group=8)).eval()
        >>> history = random_history(spec, [300, 40])
        >>> enc(random_query(spec, 2), history).shape == (2, enc.output_dim)
        True
        >>> state = enc.encode_user(history)                  # once per user
        >>> candidates = random_query(spec, 2, candidates=100)  # fields [B, C, ...]
        >>> scores = enc.score_candidates(state, candidates)
        >>> scores.shape == (2, 100, enc.output_dim)
        True
        >>> first = Query(candidates.embeddings[:, 0], candidates.item_ids[:, 0],
        ...               candidates.category_ids[:, 0], candidates.group_ids[:, 0])
        >>> torch.allclose(scores[:, 0], enc(first, history), atol=1e-5)  # = the full forward
        True
    """

    def __init__(self, spec: EncoderSpec, config: DMGINConfig | None = None) -> None:
        super().__init__()
        self.spec = spec
        self.config = cfg = config or DMGINConfig()
        h = cfg.hidden_dim
        self.behavior_proj = nn.Linear(spec.embedding_dim + spec.behavior_dim + 1, h)
        self.intra = (
            SelfAttentionBlock(h, cfg.num_heads, cfg.dropout)
            if cfg.use_intra_group_transformer
            else None
        )
        stats_dim = group_stats_dim(spec.num_behaviors, spec.num_numeric)
        self.stats_mlp = (
            MLP(stats_dim, [h, h], output_activation=True) if cfg.use_statistics else None
        )
        self.group_embedding = nn.Embedding(spec.num_groups, h) if cfg.use_group_embedding else None
        parts = (
            int(cfg.use_intra_group_transformer)
            + int(cfg.use_statistics)
            + int(cfg.use_group_embedding)
        )
        self.group_proj = nn.Linear(parts * h, h) if cfg.use_group_attention else None
        self.hstu = nn.ModuleList(
            HSTULayer(h, cfg.num_heads, cfg.max_groups, cfg.causal, cfg.dropout)
            for _ in range(cfg.hstu_layers if cfg.use_hstu and cfg.use_group_attention else 0)
        )
        self.group_attention = (
            MultiHeadTargetAttention(spec.embedding_dim, h, cfg.num_heads, h // cfg.num_heads)
            if cfg.use_group_attention
            else None
        )
        self.target_attention = (
            MultiHeadTargetAttention(spec.embedding_dim, h, cfg.num_heads, h // cfg.num_heads)
            if cfg.use_target_group_attention
            else None
        )
        stats_width = spec.num_behaviors + spec.num_numeric + 1
        self.target_stats_dim = stats_width if cfg.use_target_group_statistics else 0
        self.item_stats_dim = stats_width if cfg.use_target_item_statistics else 0
        self.output_dim = (
            (self.group_attention.output_dim if self.group_attention is not None else 0)
            + (self.target_attention.output_dim + 1 if self.target_attention is not None else 0)
            + self.target_stats_dim
            + self.item_stats_dim
        )

    # -- candidate independent ----------------------------------------------------------------

    def behavior_features(
        self,
        embeddings: torch.Tensor,
        behavior_embeddings: torch.Tensor,
        age: torch.Tensor,
        index: torch.Tensor,
        mask: torch.Tensor,
        embedding_rows: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``[*index.shape, H]`` projection of (item/category embedding, behavior embedding,
        log age) of the behaviors at ``index`` (rows into N; masked slots are 0);
        ``embedding_rows``: :class:`History`'s, when only some rows were looked up.

        Gather first, project second: a user costs O(G*M + K) projected rows, not O(L)."""
        age_days = torch.log1p(
            jagged.gather_padded(age.unsqueeze(1), index, mask).clamp_min(0) / SECONDS_PER_DAY
        )
        rows = embedding_index(embedding_rows, index)
        features = torch.cat(
            [
                jagged.gather_padded(embeddings, rows, mask),
                jagged.gather_padded(behavior_embeddings, rows, mask),
                age_days.to(embeddings.dtype),  # age stays float32 under a bf16 module
            ],
            dim=-1,
        )
        return self.behavior_proj(features) * mask.unsqueeze(-1).to(features.dtype)

    def _group(self, history: History) -> GroupedBehaviors:
        """The history bucketed into at most G groups of at most M behaviors (ids only)."""
        cfg = self.config
        return group_behaviors(
            history.group_ids,
            history.offsets,
            history.behavior_ids,
            history.age,
            history.numeric,
            cfg.max_groups,
            cfg.max_per_group,
            self.spec.num_behaviors,
            skip_group=NO_GROUP,
        )

    def encode_user(self, history: History) -> DMGINUserState:
        """The candidate-independent state of each user (groups after the HSTU layers)."""
        return self._encode_user(history, None)

    def _encode_user(
        self, history: History, target_rows: tuple[torch.Tensor, torch.Tensor] | None
    ) -> DMGINUserState:
        """``target_rows``: ``(index [B, K], mask [B, K])`` of the candidate's group, gathered in
        the same call as the group slots: every gather's backward is a whole ``[N, D]`` gradient,
        so one gather instead of two saves a zero-fill and an add of that size per step."""
        cfg = self.config
        device = history.embeddings.device
        dtype = history.embeddings.dtype
        b = history.lengths.shape[0]
        h = cfg.hidden_dim
        if self.group_attention is None:
            empty = torch.zeros(b, 1, h, device=device, dtype=dtype)
            return DMGINUserState(
                empty,
                torch.zeros(b, 1, dtype=torch.bool, device=device),
                history.embeddings,
                history.behavior_embeddings,
                history.group_ids,
                history.item_ids,
                history.offsets,
                history.behavior_ids,
                history.age,
                history.numeric,
                embedding_rows=history.embedding_rows,
            )
        prefetched = None
        grouped = self._group(history)
        g = grouped.group_mask.shape[1]
        parts = []
        if self.intra is not None:
            # only the V valid groups go through the transformer: [V, M, H]
            valid = grouped.group_mask
            inner_mask = grouped.behavior_mask[valid]
            # slots are left-aligned: pad only to the largest group of the batch (<= M)
            # (traced: all M slots, a static width the attention kernels can specialize on)
            width = (
                cfg.max_per_group
                if tracing()
                else max(int(inner_mask.sum(dim=1).max()), 1)
                if inner_mask.shape[0]
                else 1
            )
            inner_mask = inner_mask[:, :width]
            inner_index = grouped.behavior_index[valid][:, :width]
            if target_rows is None:
                slots = self.behavior_features(
                    history.embeddings,
                    history.behavior_embeddings,
                    history.age,
                    inner_index,
                    inner_mask,
                    history.embedding_rows,
                )
            else:
                target_index, target_mask = target_rows
                both = self.behavior_features(
                    history.embeddings,
                    history.behavior_embeddings,
                    history.age,
                    torch.cat([inner_index.reshape(-1), target_index.reshape(-1)]),
                    torch.cat([inner_mask.reshape(-1), target_mask.reshape(-1)]),
                    history.embedding_rows,
                )
                slots, target = both.split([inner_index.numel(), target_index.numel()])
                slots = slots.view(inner_index.shape + (h,))
                prefetched = (target_index, target_mask, target.view(target_index.shape + (h,)))
            pooled = history.embeddings.new_zeros((b, g, h), dtype=dtype)  # FX records it
            if tracing() or slots.shape[0]:  # traced: V = 0 runs the same ops on nothing
                encoded = masked_mean(self.intra(slots, inner_mask), inner_mask)
                pooled = pooled.index_put((valid,), encoded)
            parts.append(pooled)
        if self.stats_mlp is not None:
            parts.append(self.stats_mlp(grouped.stats.to(dtype)))  # stats are float32
        if self.group_embedding is not None:
            parts.append(self.group_embedding(grouped.group_ids))
        assert self.group_proj is not None
        groups = self.group_proj(torch.cat(parts, dim=-1)) * grouped.group_mask.unsqueeze(-1)
        if len(self.hstu):
            rows = history.offsets[:-1].unsqueeze(1) + grouped.group_last_position
            if tracing():  # no branch on N: a masked group reads an appended 0 (N = 0 included)
                age = torch.cat([history.age, history.age.new_zeros(1)])
                last_age = age[rows.clamp(max=history.age.shape[0])]
            elif history.age.shape[0]:
                last_age = history.age[rows.clamp(max=history.age.shape[0] - 1)]
            else:
                last_age = torch.zeros_like(rows, dtype=dtype)
            times = -last_age * grouped.group_mask  # larger = more recent
            for layer in self.hstu:
                groups = layer(groups, grouped.group_mask, times)
        return DMGINUserState(
            groups,
            grouped.group_mask,
            history.embeddings,
            history.behavior_embeddings,
            history.group_ids,
            history.item_ids,
            history.offsets,
            history.behavior_ids,
            history.age,
            history.numeric,
            target_rows=prefetched,
            embedding_rows=history.embedding_rows,
        )

    # -- per candidate ------------------------------------------------------------------------

    def forward_candidates(self, candidates: Query, history: History) -> torch.Tensor:
        """``[B, C, output_dim]`` from one :meth:`encode_user` per user (the history is grouped
        and run through the transformers once, not once per candidate)."""
        return self.score_candidates(self.encode_user(history), candidates)

    def score_candidates(self, state: DMGINUserState, candidates: Query) -> torch.Tensor:
        """``candidates`` fields shaped ``[B, C, ...]`` -> ``[B, C, output_dim]``."""
        b, c, _ = candidates.embeddings.shape
        outputs = []
        if self.group_attention is not None:
            outputs.append(
                self.group_attention(candidates.embeddings, state.groups, state.group_mask)
            )
        if self.target_attention is not None or self.target_stats_dim or self.item_stats_dim:
            outputs.append(self._target_group(state, candidates, b, c))
        return torch.cat(outputs, dim=-1)

    def _target_group(
        self, state: DMGINUserState, candidates: Query, b: int, c: int
    ) -> torch.Tensor:
        """``[B, C, *]``: attention over the most recent behaviors in each candidate's group
        (+ log1p of their count), and/or the statistics of all of them.

        One candidate per user (training) scans the history; C > 1 candidates look their group
        up in the state's group index instead (O(log L + K) per candidate, not O(L)). The two
        paths agree (``tests/encoders/test_dmgin.py``: forward vs ``score_candidates``)."""
        if tracing() or c > 1:  # traced: C is symbolic, the indexed path serves any C
            return self._target_group_indexed(state, candidates, b, c)
        query_groups = searched_groups(candidates.group_ids.reshape(b))
        segment = jagged.segment_ids(state.offsets, state.group_ids.shape[0])
        same = (state.group_ids == query_groups[segment]).to(state.embeddings.dtype)  # [N]
        count = torch.zeros(b, device=same.device, dtype=same.dtype).index_add(0, segment, same)
        outputs = []
        if self.target_attention is not None:
            if state.target_rows is not None:
                index, mask, kept = state.target_rows
            else:
                index, mask = hard_search(
                    state.group_ids, state.offsets, query_groups, self.config.target_group_max_len
                )
                kept = self.behavior_features(
                    state.embeddings,
                    state.behavior_embeddings,
                    state.age,
                    index,
                    mask,
                    state.embedding_rows,
                )
            attended = self.target_attention(candidates.embeddings.reshape(b, -1), kept, mask)
            outputs += [attended, torch.log1p(count).unsqueeze(1)]
        if self.target_stats_dim:
            outputs.append(self._target_group_statistics(state, segment, same, count))
        if self.item_stats_dim:
            query_items = searched_groups(candidates.item_ids.reshape(b))  # item 0 matches none
            same_item = (state.item_ids == query_items[segment]).to(same.dtype)
            item_count = torch.zeros_like(count).index_add(0, segment, same_item)
            outputs.append(self._target_group_statistics(state, segment, same_item, item_count))
        return torch.cat(outputs, dim=1).unflatten(0, (b, c))

    def _target_group_indexed(
        self, state: DMGINUserState, candidates: Query, b: int, c: int
    ) -> torch.Tensor:
        if state.group_index is None:
            state.group_index = build_group_index(state.group_ids, state.offsets)
        index = state.group_index
        users = torch.arange(b, device=state.offsets.device).repeat_interleave(c)
        rows, mask, segment, found = lookup_group(
            index,
            users,
            searched_groups(candidates.group_ids.flatten()),
            self.config.target_group_max_len,
        )
        segment, count = self._segment_counts(index, segment, found, state.embeddings.dtype)
        outputs = []
        if self.target_attention is not None:
            queries = candidates.embeddings.flatten(0, 1)
            if tracing():
                kept = self.behavior_features(
                    state.embeddings, state.behavior_embeddings, state.age, rows, mask,
                    state.embedding_rows,
                )  # fmt: skip
                attended = self.target_attention(queries, kept, mask)
            else:  # candidates of one (user, group) segment read the same K behaviors:
                # project them, and the attention's keys and values, once per segment
                shared, key_of = torch.unique(segment, return_inverse=True)
                first = torch.full_like(shared, segment.numel()).scatter_reduce(
                    0, key_of, torch.arange(segment.numel(), device=segment.device), "amin"
                )
                kept = self.behavior_features(
                    state.embeddings, state.behavior_embeddings, state.age, rows[first],
                    mask[first], state.embedding_rows,
                )  # fmt: skip
                attended = self.target_attention.forward_shared(queries, kept, mask[first], key_of)
            outputs += [attended, torch.log1p(count).unsqueeze(1)]
        if self.target_stats_dim:
            if state.group_tables is None:
                state.group_tables = self._segment_tables(state, index)
            per_type, sums, newest = (table[segment] for table in state.group_tables)
            outputs.append(self._statistics_from(per_type, sums, newest, count))
        if self.item_stats_dim:
            if state.item_index is None:
                state.item_index = build_group_index(state.item_ids, state.offsets)
            items = state.item_index
            _, _, item_segment, item_found = lookup_group(
                items, users, searched_groups(candidates.item_ids.flatten()), 1
            )
            item_segment, item_count = self._segment_counts(
                items, item_segment, item_found, state.embeddings.dtype
            )
            if state.item_tables is None:
                state.item_tables = self._segment_tables(state, items)
            per_type, sums, newest = (table[item_segment] for table in state.item_tables)
            outputs.append(self._statistics_from(per_type, sums, newest, item_count))
        return torch.cat(outputs, dim=1).unflatten(0, (b, c))

    @staticmethod
    def _segment_counts(
        index: GroupIndex, segment: torch.Tensor, found: torch.Tensor, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each query's segment (S, an all-zero dummy row, where the user has none of that key)
        and its number of behaviors."""
        segment = torch.where(found, segment, index.segment_keys.numel())
        sizes = index.segment_offsets[1:] - index.segment_offsets[:-1]
        return segment, torch.cat([sizes, sizes.new_zeros(1)])[segment].to(dtype)

    def _segment_tables(
        self, state: DMGINUserState, index: GroupIndex
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``[S + 1, *]`` per-segment counts per behavior type, numeric sums and newest age
        (row S: a segment with no behaviors)."""
        s, nb = index.segment_keys.numel() + 1, self.spec.num_behaviors
        # float32 sums (a bf16 running sum stops growing at 256), cast to the embeddings' dtype
        # new_zeros / new_full of a traced tensor, not torch.zeros(size): FX records those
        dtype, like = torch.float32, state.embeddings
        seg, order = index.segment_of_sorted, index.order
        per_type = like.new_zeros((s * nb,), dtype=dtype).index_add(
            0, seg * nb + state.behavior_ids[order], torch.ones_like(seg, dtype=dtype)
        )
        sums = like.new_zeros((s, state.numeric.shape[1]), dtype=dtype).index_add(
            0, seg, state.numeric[order].to(dtype)
        )
        newest = like.new_full((s,), float("inf"), dtype=dtype).scatter_reduce(
            0, seg, state.age[order].to(dtype), reduce="amin"
        )
        out = state.embeddings.dtype
        return per_type.view(s, nb).to(out), sums.to(out), newest.to(out)

    def _statistics_from(
        self, per_type: torch.Tensor, sums: torch.Tensor, newest: torch.Tensor, count: torch.Tensor
    ) -> torch.Tensor:
        recency = torch.where(
            count > 0,
            torch.log1p(newest.clamp(min=0.0, max=1e12) / SECONDS_PER_DAY),
            torch.zeros_like(count),
        )
        return torch.cat(
            [
                torch.log1p(per_type),
                sums / count.clamp_min(1.0).unsqueeze(1),
                recency.unsqueeze(1),
            ],
            dim=1,
        )

    def _target_group_statistics(
        self,
        state: DMGINUserState,
        segment: torch.Tensor,
        same: torch.Tensor,
        count: torch.Tensor,
    ) -> torch.Tensor:
        """``[B, num_behaviors + F + 1]`` over each sample's candidate's same-group behaviors
        (one candidate per user): log1p(count per behavior type), mean of each numeric field,
        log1p(days since the most recent one) (0 when there is none). No parameters; O(N)."""
        bc, nb = count.shape[0], self.spec.num_behaviors
        dtype = same.dtype  # sums in float32: a bf16 running sum stops growing at 256
        same, count = same.to(torch.float32), count.to(torch.float32)
        per_type = same.new_zeros((bc * nb,))
        per_type = per_type.index_add(0, segment * nb + state.behavior_ids, same)
        numeric = state.numeric
        sums = same.new_zeros((bc, numeric.shape[1]))
        sums = sums.index_add(0, segment, numeric * same.unsqueeze(1))
        # most recent same-group behavior = smallest age; others pushed to +inf
        age = torch.where(same > 0, state.age, torch.full_like(same, float("inf")))
        newest = same.new_full((bc,), float("inf"))
        newest = newest.scatter_reduce(0, segment, age, reduce="amin")
        return self._statistics_from(per_type.view(bc, nb), sums, newest, count).to(dtype)

    @property
    def _reads_group_slots(self) -> bool:
        """Whether ``forward`` reads behavior embeddings through the G x M group slots (only
        the intra-group transformer feeding the group attention does)."""
        return self.intra is not None and self.group_attention is not None

    def history_rows(self, query: Query, history: History) -> torch.Tensor | None:
        """The group slots the intra-group transformer reads (the M most recent behaviors of
        each of the G kept groups) and the candidate's group rows of the same-group attention;
        statistics, group ids and times need no embedding. O(G*M + K) rows per sample.

        None (look up all) when those could be more than half of the N rows: finding the slots
        costs one more grouping sort, which short histories do not repay."""
        cfg = self.config
        b, n = history.lengths.shape[0], history.group_ids.shape[0]
        per_sample = cfg.max_groups * cfg.max_per_group if self._reads_group_slots else 0
        per_sample += cfg.target_group_max_len if self.target_attention is not None else 0
        if 2 * b * per_sample > n:
            return None
        parts = [history.offsets.new_zeros(0)]
        if self._reads_group_slots:
            grouped = self._group(history)
            parts.append(grouped.behavior_index[grouped.behavior_mask])
        if self.target_attention is not None:
            index, mask = hard_search(
                history.group_ids,
                history.offsets,
                searched_groups(query.group_ids),
                cfg.target_group_max_len,
            )
            parts.append(index[mask])
        return torch.cat(parts)

    def forward(self, query: Query, history: History) -> torch.Tensor:
        candidates = Query(
            embeddings=query.embeddings.unsqueeze(1),
            item_ids=query.item_ids.unsqueeze(1),
            category_ids=query.category_ids.unsqueeze(1),
            group_ids=query.group_ids.unsqueeze(1),
        )
        target_rows = None
        if self.target_attention is not None and self._reads_group_slots:
            # the candidate's group rows join the group slots' gather
            target_rows = hard_search(
                history.group_ids,
                history.offsets,
                searched_groups(query.group_ids),
                self.config.target_group_max_len,
            )
        state = self._encode_user(history, target_rows)
        return self.score_candidates(state, candidates).squeeze(1)
