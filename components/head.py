"""The dense side of the CTR model: everything after the two embedding lookups.

:class:`SequenceHead` turns the looked-up candidate and history rows into the encoder's
``Query`` / ``History``, runs the sequence encoder and the over-arch MLP. Shapes: B samples,
N = sum of history lengths, R history rows looked up (N without a lookup plan), E =
``embedding_dim`` per id table, D = 2E, D_b = ``behavior_dim``, F numeric fields.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchrec import KeyedTensor

from components.encoders.base import EncoderSpec, History, Query, SequenceEncoder
from components.encoders.registry import build_encoder
from components.layers.attention_dropout import set_attention_dropout
from components.layers.mlp import MLP
from components.layers.numeric import NumericScaler
from components.model_config import ModelConfig, ModelOutput, Vocab
from components.ops.jagged import lengths_to_offsets, segment_ids
from components.ops.symbolic import tracing

# ops imported by name are FX leaves only where this module registers them (torch.fx.wrap
# patches the calling module's globals): the encoder then traces symbolically, op calls as nodes
torch.fx.wrap("lengths_to_offsets")
torch.fx.wrap("segment_ids")


class SequenceHead(nn.Module):
    """Everything after the embedding lookups: builds Query/History, runs the encoder, scores.

    forward(user_kt, item_kt, item_ids [3 * (B + N)], history_lengths [B], history_age [N],
    history_numeric [N, F], history_rows [R] | None) -> ModelOutput

    ``history_numeric`` holds the raw numeric event fields: the head scales them first
    (``components.layers.numeric.NumericScaler``: signed log, then the training statistics given
    as ``numeric_scaling``, kept as buffers in every checkpoint and export).

    ``history_rows(...)`` names, from ids alone, the history rows the encoder will read, so
    that a caller can look up only those (``pipelines.train.lookup_plan``).
    """

    def __init__(
        self,
        config: ModelConfig,
        vocab: Vocab,
        item_to_group: torch.Tensor | None = None,
        content_embeddings: torch.Tensor | None = None,
        numeric_scaling: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        center, scale = numeric_scaling if numeric_scaling is not None else (None, None)
        self.numeric_scaler = NumericScaler(
            vocab.num_numeric, center, scale, enabled=config.numeric_scaling
        )
        if config.group_key == "cluster":
            if item_to_group is None:
                raise ValueError("group_key 'cluster' needs an item_to_group table")
            num_groups = int(item_to_group.max()) + 1
        else:
            num_groups = vocab.categories if config.group_key == "category" else vocab.items
        self.register_buffer(
            "item_to_group",
            item_to_group.to(torch.int64)
            if item_to_group is not None
            else torch.zeros(0, dtype=torch.int64),
        )
        d = 2 * config.embedding_dim
        self.spec = EncoderSpec(
            embedding_dim=d,
            behavior_dim=config.behavior_dim,
            num_behaviors=vocab.behaviors,
            num_numeric=vocab.num_numeric,
            num_groups=num_groups,
        )
        self.encoder: SequenceEncoder = build_encoder(
            config.encoder, self.spec, config.encoder_config or None
        )
        if not set_attention_dropout(self.encoder, config.attention_dropout) and (
            config.attention_dropout > 0
        ):
            raise ValueError(
                f"model.attention_dropout={config.attention_dropout}: encoder {config.encoder} "
                "has no attention weights to drop (no AttentionDropout layer)"
            )
        takes_content = hasattr(self.encoder, "load_content")
        if content_embeddings is not None:
            if not takes_content:
                raise ValueError(f"encoder {config.encoder} does not read content embeddings")
            if content_embeddings.shape[0] != vocab.items:
                raise ValueError(
                    f"content_embeddings has {content_embeddings.shape[0]} rows, "
                    f"expected one per item index ({vocab.items})"
                )
            self.encoder.load_content(content_embeddings)  # frozen buffer, no gradient
        over_in = self.encoder.output_dim + d
        if config.use_user_embedding:
            over_in += config.embedding_dim
        if config.numeric_summary:
            over_in += vocab.num_numeric + 1  # + log1p(history length)
        self.over_arch = MLP(over_in, [*config.over_arch, 1], dropout=config.over_arch_dropout)

    def groups_of(self, items: torch.Tensor, categories: torch.Tensor) -> torch.Tensor:
        if self.config.group_key == "category":
            return categories
        if self.config.group_key == "item":
            return items
        return groups_of_items(self.item_to_group, items)

    def forward(
        self,
        user_kt: KeyedTensor,
        item_kt: KeyedTensor,
        item_ids: torch.Tensor,
        history_lengths: torch.Tensor,
        history_age: torch.Tensor,
        history_numeric: torch.Tensor,
        history_rows: torch.Tensor | None = None,
    ) -> ModelOutput:
        """``item_kt``: B candidate rows, then every history row, or only the rows
        ``history_rows`` names (``[R]`` ascending indices into N; the encoder then gets those R
        embeddings and ``History.embedding_rows``)."""
        b = history_lengths.shape[0]
        n = item_ids.numel() // 3 - b
        query, history = self._query_and_history(
            *_embeddings(item_kt, b, history_rows, n),
            item_ids,
            history_lengths,
            history_age,
            history_numeric,
        )
        interest, aux = self.encoder.forward_with_aux(query, history)
        user = user_kt["user_id"] if self.config.use_user_embedding else None
        logits = self._logits(interest, query.embeddings, user, history, 1)
        return ModelOutput(logits=logits, aux_logits=aux)

    def rank(
        self,
        user_kt: KeyedTensor,
        item_kt: KeyedTensor,
        item_ids: torch.Tensor,
        history_lengths: torch.Tensor,
        history_age: torch.Tensor,
        history_numeric: torch.Tensor,
        num_candidates: int,
    ) -> torch.Tensor:
        """Logits ``[B, C]`` of C candidates per user; the item side holds the ``B * C``
        candidate rows (user-major) first, then the N history rows. The encoder scores them
        through :meth:`SequenceEncoder.forward_candidates` (DMGIN: one user state for all C)."""
        b, c = history_lengths.shape[0], num_candidates
        # every history row is looked up here: N, read only with a lookup plan, is not needed
        query_emb, history_emb, behavior_emb, _ = _embeddings(item_kt, b * c, None, 0)
        user = user_kt["user_id"] if self.config.use_user_embedding else None
        ids = item_ids.view(3, -1)  # item, category, behavior ids per row
        return self.rank_embeddings(
            user,
            query_emb.unflatten(0, (b, c)),
            ids[0, : b * c].view(b, c),
            ids[1, : b * c].view(b, c),
            history_emb,
            behavior_emb,
            ids[0, b * c :],
            ids[1, b * c :],
            ids[2, b * c :],
            history_lengths,
            history_age,
            history_numeric,
        )

    def rank_embeddings(
        self,
        user_emb: torch.Tensor | None,
        candidate_emb: torch.Tensor,
        candidate_items: torch.Tensor,
        candidate_categories: torch.Tensor,
        history_emb: torch.Tensor,
        history_behavior_emb: torch.Tensor,
        history_items: torch.Tensor,
        history_categories: torch.Tensor,
        history_behaviors: torch.Tensor,
        history_lengths: torch.Tensor,
        history_age: torch.Tensor,
        history_numeric: torch.Tensor,
    ) -> torch.Tensor:
        """:meth:`rank` after the lookups, on plain tensors (the dense part an export cuts at
        the embedding boundary): ``user_emb [B, E]`` (None without ``use_user_embedding``),
        ``candidate_emb [B, C, D]``, candidate ids ``[B, C]``, ``history_emb [N, D]``,
        ``history_behavior_emb [N, D_b]``, history ids ``[N]`` -> logits ``[B, C]``."""
        b, c = candidate_emb.shape[0], candidate_emb.shape[1]
        flat, history = self._query_and_history_of(
            candidate_emb.flatten(0, 1),
            candidate_items.flatten(),
            candidate_categories.flatten(),
            history_emb,
            history_behavior_emb,
            None,
            history_items,
            history_categories,
            history_behaviors,
            history_lengths,
            history_age,
            history_numeric,
        )
        grid = Query(
            embeddings=flat.embeddings.unflatten(0, (b, c)),
            item_ids=flat.item_ids.view(b, c),
            category_ids=flat.category_ids.view(b, c),
            group_ids=flat.group_ids.view(b, c),
        )
        interest = self.encoder.forward_candidates(grid, history).flatten(0, 1)
        return self._logits(interest, flat.embeddings, user_emb, history, c).unflatten(0, (b, c))

    def history_rows(
        self,
        item_ids: torch.Tensor,
        history_lengths: torch.Tensor,
        history_age: torch.Tensor,
        history_numeric: torch.Tensor,
    ) -> torch.Tensor | None:
        """``[R]`` history rows (indices into N) whose embeddings :meth:`forward` reads, from
        ids alone (the encoder's :meth:`SequenceEncoder.history_rows`); None: all of them."""
        b = history_lengths.shape[0]
        n = item_ids.numel() // 3 - b
        device = item_ids.device
        no_embedding = torch.zeros(n, 0, device=device)  # width 0: nothing is looked up yet
        query, history = self._query_and_history(
            torch.zeros(b, 0, device=device),
            no_embedding,
            no_embedding,
            None,
            item_ids,
            history_lengths,
            history_age,
            history_numeric,
        )
        return self.encoder.history_rows(query, history)

    def _query_and_history(
        self,
        query_emb: torch.Tensor,
        history_emb: torch.Tensor,
        history_behavior_emb: torch.Tensor,
        embedding_rows: torch.Tensor | None,
        item_ids: torch.Tensor,
        history_lengths: torch.Tensor,
        history_age: torch.Tensor,
        history_numeric: torch.Tensor,
    ) -> tuple[Query, History]:
        """Embeddings of the K candidates ``[K, D]`` and of the history (all N rows, or the rows
        looked up and ``embedding_rows``: :func:`_embeddings`); ``item_ids`` ``[3 * (K + N)]``
        key-major, candidates first."""
        k = query_emb.shape[0]
        ids = item_ids.view(3, -1)  # item, category, behavior ids per row
        items, categories, behaviors = ids[0], ids[1], ids[2]
        return self._query_and_history_of(
            query_emb,
            items[:k],
            categories[:k],
            history_emb,
            history_behavior_emb,
            embedding_rows,
            items[k:],
            categories[k:],
            behaviors[k:],
            history_lengths,
            history_age,
            history_numeric,
        )

    def _query_and_history_of(
        self,
        query_emb: torch.Tensor,
        query_items: torch.Tensor,
        query_categories: torch.Tensor,
        history_emb: torch.Tensor,
        history_behavior_emb: torch.Tensor,
        embedding_rows: torch.Tensor | None,
        history_items: torch.Tensor,
        history_categories: torch.Tensor,
        history_behaviors: torch.Tensor,
        history_lengths: torch.Tensor,
        history_age: torch.Tensor,
        history_numeric: torch.Tensor,
    ) -> tuple[Query, History]:
        """:meth:`_query_and_history` with the ids given per field (``[K]`` and ``[N]``)."""
        query = Query(
            embeddings=query_emb,
            item_ids=query_items,
            category_ids=query_categories,
            group_ids=self.groups_of(query_items, query_categories),
        )
        history = History(
            embeddings=history_emb,
            lengths=history_lengths,
            offsets=lengths_to_offsets(history_lengths),
            item_ids=history_items,
            category_ids=history_categories,
            group_ids=self.groups_of(history_items, history_categories),
            behavior_ids=history_behaviors,
            age=history_age,
            # a method, not a module call: history_rows runs on TorchRec's data-loading thread
            numeric=self.numeric_scaler.scale_values(history_numeric),
            behavior_embeddings=history_behavior_emb,
            embedding_rows=embedding_rows,
        )
        return query, history

    def _logits(
        self,
        interest: torch.Tensor,
        candidate_emb: torch.Tensor,
        user_emb: torch.Tensor | None,
        history: History,
        per_user: int,
    ) -> torch.Tensor:
        """Over-arch on ``[interest, candidate, user, history summary]`` for ``B * per_user``
        candidate rows (user-major); the user-side parts are repeated ``per_user`` times."""
        parts = [interest, candidate_emb]
        if user_emb is not None:
            parts.append(user_emb)
        if self.config.numeric_summary:
            parts.append(_numeric_summary(history))
        if tracing() or per_user > 1:  # traced: C is symbolic (a repeat of 1 is a copy)
            parts[2:] = [part.repeat_interleave(per_user, dim=0) for part in parts[2:]]
        return self.over_arch(torch.cat(parts, dim=1)).squeeze(1)


ITEM_SIDE_KEYS = ["item_id", "category_id", "behavior_id"]


def split_item_side(item_kt: KeyedTensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``([R, 2E] item and category embeddings side by side, [R, D_b] behavior embeddings)``.

    One column split of the KeyedTensor's values: its backward writes the gradient of the whole
    ``[R, 2E + D_b]`` once, where splitting per key and concatenating item with category again
    would copy it twice more. Needs the keys in ``sparse_arch``'s order (DMP keeps it).
    """
    if item_kt.keys() != ITEM_SIDE_KEYS:
        raise ValueError(f"item KeyedTensor keys {item_kt.keys()}, expected {ITEM_SIDE_KEYS}")
    item_dim, category_dim, behavior_dim = item_kt.length_per_key()
    item_side, behavior = item_kt.values().split([item_dim + category_dim, behavior_dim], dim=1)
    return item_side, behavior


torch.fx.wrap("split_item_side")  # a leaf under FX symbolic tracing: it reads the KT's keys


def _embeddings(
    item_kt: KeyedTensor, k: int, history_rows: torch.Tensor | None, n: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``(candidates [K, D], history, history behavior, embedding_rows)`` from the item side's
    lookup of K candidate rows, then all N history rows (``[N, D]``, ``[N, D_b]``, None), or
    only the R rows ``history_rows`` names: then ``[R + 1, D]``, ``[R + 1, D_b]`` (row R is
    zeros) and ``embedding_rows [N]``, the row of each behavior (R where not looked up). No
    ``[N, D]`` tensor is built then, forward or backward."""
    item_side, behavior_emb = split_item_side(item_kt)
    rows = [k, item_side.shape[0] - k]  # candidates, then the history rows looked up
    # row splits, not slices: a slice's backward zero-fills the whole [K + N, D] once per slice
    query_emb, history_emb = item_side.split(rows)
    history_behavior_emb = behavior_emb.split(rows)[1]
    if history_rows is None:
        return query_emb, history_emb, history_behavior_emb, None
    r = history_rows.numel()
    embedding_rows = torch.full((n,), r, dtype=torch.int64, device=history_rows.device)
    embedding_rows = embedding_rows.index_put(  # not item assignment: FX records this
        (history_rows,), torch.arange(r, device=history_rows.device)
    )
    return (
        query_emb,
        F.pad(history_emb, (0, 0, 0, 1)),  # + the zero row
        F.pad(history_behavior_emb, (0, 0, 0, 1)),
        embedding_rows,
    )


def groups_of_items(item_to_group: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """``item_to_group[items]``, refusing item ids outside the table (no silent clamp: an item
    past the table is a table built for another item vocabulary). Items the table has no group
    for hold group 0, which the encoders treat as no group (``encoders.base.NO_GROUP``). The
    check reads the ids' range, so it is skipped while torch.compile / torch.export trace."""
    tracing = torch.compiler.is_compiling() or torch.compiler.is_exporting()
    if not tracing and items.numel():
        size = item_to_group.shape[0]
        low, high = int(items.min()), int(items.max())
        if low < 0 or high >= size:
            raise ValueError(
                f"item id {high if high >= size else low} is outside the item -> group table "
                f"({size} items, ids 0..{size - 1}): build the table for this item vocabulary"
            )
    return item_to_group[items]


torch.fx.wrap("groups_of_items")  # its check reads the ids' range


def _numeric_summary(history: History) -> torch.Tensor:
    """``[B, F + 1]``: mean of each numeric field over the history, and log1p(length)."""
    b = history.lengths.shape[0]
    segment = segment_ids(history.offsets, history.numeric.shape[0])
    # new_zeros, not torch.zeros: FX records a method of a traced tensor, not a size argument
    sums = history.numeric.new_zeros((b, history.numeric.shape[1]), dtype=torch.float32)
    sums.index_add_(0, segment, history.numeric.float())
    lengths = history.lengths.to(sums.dtype).unsqueeze(1)
    means = sums / lengths.clamp_min(1.0)
    return torch.cat([means, torch.log1p(lengths)], dim=1)
