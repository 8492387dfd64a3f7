"""A complete CTR model: TorchRec sparse arch + one sequence encoder + an over-arch MLP.

Shapes: B samples, N = sum of history lengths, E = ``embedding_dim`` per id table,
D = 2E (item and category embeddings concatenated), D_b = ``behavior_dim``, F numeric fields.

The model reads a batch by attribute (``pipelines.data.batch.Batch`` or any object with the same
fields): ``users`` (KJT, stride B), ``items`` (KJT, stride B + N, keys item_id / category_id /
behavior_id, candidate rows first, then every history position), ``history_lengths``,
``history_age``, ``history_numeric``. The top-level ``forward`` only calls the two
EmbeddingBagCollections on batch attributes and hands everything else to one unsharded child
(``head``): TorchRec's ``TrainPipelineSparseDist`` traces exactly this shape and can then
input-dist the next batch while the current one trains.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torchrec import (
    EmbeddingBagCollection,
    EmbeddingBagConfig,
    KeyedJaggedTensor,
    KeyedTensor,
    PoolingType,
)

from components.encoders.base import EncoderSpec, History, Query, SequenceEncoder
from components.encoders.registry import build_encoder
from components.layers.mlp import MLP
from components.ops.jagged import lengths_to_offsets

GROUP_KEYS = ("category", "item", "cluster")


@dataclass
class Vocab:
    """Embedding table sizes (max index + 1; index 0 = padding / unknown).

    Attributes:
        users, items, categories, behaviors: id vocabularies.
        num_numeric: F, numeric fields per behavior.
        groups: size of the ``item -> group`` table's group ids (cluster group key only).
    """

    users: int
    items: int
    categories: int
    behaviors: int
    num_numeric: int = 0
    groups: int | None = None


@dataclass
class ModelConfig:
    """Attributes:
    embedding_dim: E, dimension of the user, item and category tables.
    behavior_dim: D_b, dimension of the behavior-type table.
    encoder: a built-in encoder name (components.encoders.registry.ENCODERS) or your own as
        ``"package.module:ClassName"``.
    encoder_config: fields of that encoder's config dataclass.
    group_key: interest groups of behaviors: ``category`` id, ``item`` id (DGIN) or a content
        ``cluster`` (needs an ``item_to_group`` table).
    over_arch: hidden sizes of the final MLP (a last layer of size 1 is added).
    use_user_embedding: feed the user id embedding to the over-arch.
    numeric_summary: feed the mean of each numeric field over the history to the over-arch.
    """

    embedding_dim: int = 16
    behavior_dim: int = 8
    encoder: str = "DMGIN"
    encoder_config: dict[str, Any] = field(default_factory=dict)
    group_key: str = "category"
    over_arch: list[int] = field(default_factory=lambda: [200, 80])
    use_user_embedding: bool = True
    numeric_summary: bool = True

    def __post_init__(self) -> None:
        if self.group_key not in GROUP_KEYS:
            raise ValueError(f"group_key must be one of {GROUP_KEYS}, got {self.group_key!r}")
        if self.embedding_dim < 1 or self.behavior_dim < 1:
            raise ValueError("embedding_dim and behavior_dim must be >= 1")


@dataclass
class ModelOutput:
    logits: torch.Tensor  # [B]
    aux_logits: dict[str, torch.Tensor]  # name -> [B]


def sparse_arch(
    config: ModelConfig, vocab: Vocab, device: torch.device | None = None
) -> tuple[EmbeddingBagCollection, EmbeddingBagCollection]:
    """The user EBC (``user_id``) and the item-side EBC (``item_id, category_id, behavior_id``)."""
    e = config.embedding_dim
    users = EmbeddingBagCollection(
        tables=[
            EmbeddingBagConfig(
                name="user",
                embedding_dim=e,
                num_embeddings=vocab.users,
                feature_names=["user_id"],
                pooling=PoolingType.SUM,
            )
        ],
        device=device,
    )
    items = EmbeddingBagCollection(
        tables=[
            EmbeddingBagConfig(
                name="item",
                embedding_dim=e,
                num_embeddings=vocab.items,
                feature_names=["item_id"],
                pooling=PoolingType.SUM,
            ),
            EmbeddingBagConfig(
                name="category",
                embedding_dim=e,
                num_embeddings=vocab.categories,
                feature_names=["category_id"],
                pooling=PoolingType.SUM,
            ),
            EmbeddingBagConfig(
                name="behavior",
                embedding_dim=config.behavior_dim,
                num_embeddings=vocab.behaviors,
                feature_names=["behavior_id"],
                pooling=PoolingType.SUM,
            ),
        ],
        device=device,
    )
    return users, items


class SequenceHead(nn.Module):
    """Everything after the embedding lookups: builds Query/History, runs the encoder, scores.

    forward(user_kt, item_kt, item_ids [B+N], history_lengths [B], history_age [N],
    history_numeric [N, F]) -> ModelOutput
    """

    def __init__(
        self,
        config: ModelConfig,
        vocab: Vocab,
        item_to_group: torch.Tensor | None = None,
        content_embeddings: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.config = config
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
        self.over_arch = MLP(over_in, [*config.over_arch, 1])

    def groups_of(self, items: torch.Tensor, categories: torch.Tensor) -> torch.Tensor:
        if self.config.group_key == "category":
            return categories
        if self.config.group_key == "item":
            return items
        return self.item_to_group[items.clamp(max=self.item_to_group.shape[0] - 1)]

    def forward(
        self,
        user_kt: KeyedTensor,
        item_kt: KeyedTensor,
        item_ids: torch.Tensor,
        history_lengths: torch.Tensor,
        history_age: torch.Tensor,
        history_numeric: torch.Tensor,
    ) -> ModelOutput:
        b = history_lengths.shape[0]
        query, history = self._query_and_history(
            item_kt, item_ids, b, history_lengths, history_age, history_numeric
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
        flat, history = self._query_and_history(
            item_kt, item_ids, b * c, history_lengths, history_age, history_numeric
        )
        grid = Query(
            embeddings=flat.embeddings.view(b, c, -1),
            item_ids=flat.item_ids.view(b, c),
            category_ids=flat.category_ids.view(b, c),
            group_ids=flat.group_ids.view(b, c),
        )
        interest = self.encoder.forward_candidates(grid, history).reshape(b * c, -1)
        user = user_kt["user_id"] if self.config.use_user_embedding else None
        return self._logits(interest, flat.embeddings, user, history, c).view(b, c)

    def _query_and_history(
        self,
        item_kt: KeyedTensor,
        item_ids: torch.Tensor,
        num_candidate_rows: int,
        history_lengths: torch.Tensor,
        history_age: torch.Tensor,
        history_numeric: torch.Tensor,
    ) -> tuple[Query, History]:
        """The first ``num_candidate_rows`` item-side rows are candidates, the rest histories."""
        k = num_candidate_rows
        item_side, behavior_emb = split_item_side(item_kt)  # [K + N, D], [K + N, D_b]
        rows = [k, item_side.shape[0] - k]  # candidates, then the N history rows
        # row splits, not slices: a slice's backward zero-fills the whole [K + N, D] once per slice
        query_emb, history_emb = item_side.split(rows)
        history_behavior_emb = behavior_emb.split(rows)[1]
        ids = item_ids.view(3, -1)  # item, category, behavior ids per row
        items, categories, behaviors = ids[0], ids[1], ids[2]
        query = Query(
            embeddings=query_emb,
            item_ids=items[:k],
            category_ids=categories[:k],
            group_ids=self.groups_of(items[:k], categories[:k]),
        )
        history = History(
            embeddings=history_emb,
            lengths=history_lengths,
            offsets=lengths_to_offsets(history_lengths),
            item_ids=items[k:],
            category_ids=categories[k:],
            group_ids=self.groups_of(items[k:], categories[k:]),
            behavior_ids=behaviors[k:],
            age=history_age,
            numeric=history_numeric,
            behavior_embeddings=history_behavior_emb,
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
        if per_user > 1:
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


def _numeric_summary(history: History) -> torch.Tensor:
    """``[B, F + 1]``: mean of each numeric field over the history, and log1p(length)."""
    b = history.lengths.shape[0]
    segment = torch.repeat_interleave(
        torch.arange(b, device=history.lengths.device), history.lengths
    )
    sums = torch.zeros(b, history.numeric.shape[1], device=history.numeric.device)
    sums.index_add_(0, segment, history.numeric)
    lengths = history.lengths.to(sums.dtype).unsqueeze(1)
    means = sums / lengths.clamp_min(1.0)
    return torch.cat([means, torch.log1p(lengths)], dim=1)


class LifelongCTRModel(nn.Module):
    """User/item EmbeddingBagCollections + :class:`SequenceHead`.

    ``item_to_group`` ([items] group of each item) serves ``group_key='cluster'``;
    ``content_embeddings`` ([items, d] frozen content vectors) feed encoders that take them
    (CiUBM).

    Example:
        >>> from pipelines.data.batch import random_batch
        >>> model = LifelongCTRModel(ModelConfig(encoder="DIN"), Vocab(100, 500, 20, 6, 1))
        >>> batch = random_batch([30, 5, 12], users=100, items=500, categories=20, behaviors=6,
        ...                      num_numeric=1)
        >>> model(batch).logits.shape
        torch.Size([3])
    """

    def __init__(
        self,
        config: ModelConfig,
        vocab: Vocab,
        item_to_group: torch.Tensor | None = None,
        content_embeddings: torch.Tensor | None = None,
        device: torch.device | None = None,
    ) -> None:
        super().__init__()
        self.user_ebc, self.item_ebc = sparse_arch(config, vocab, device)
        self.head = SequenceHead(config, vocab, item_to_group, content_embeddings)

    def forward(self, batch: Any) -> ModelOutput:
        user_kt = self.user_ebc(batch.users)
        item_kt = self.item_ebc(batch.items)
        return self.head(
            user_kt,
            item_kt,
            batch.items.values(),
            batch.history_lengths,
            batch.history_age,
            batch.history_numeric,
        )

    def rank_candidates(
        self, batch: Any, candidate_items: torch.Tensor, candidate_categories: torch.Tensor
    ) -> torch.Tensor:
        """Logits ``[B, C]`` of C candidates for each user of ``batch`` (serving / re-ranking).

        ``candidate_items``, ``candidate_categories``: ``[B, C]`` int64. The user side (user id,
        history) comes from ``batch``; its own candidate row is ignored. Column c equals
        ``model(batch).logits`` for the batch whose candidate is c. The history is looked up
        once, not C times, and DMGIN encodes it once (``forward_candidates``); the other
        encoders score C copies of it. Meant for an unsharded model in eval mode, e.g. one
        loaded by ``pipelines.plain_model.load_plain_model`` from a trainer checkpoint.

        Example:
            >>> from pipelines.data.batch import random_batch
            >>> model = LifelongCTRModel(ModelConfig(encoder="DMGIN"), Vocab(100, 500, 20, 6))
            >>> batch = random_batch([40, 7], users=100, items=500, categories=20, behaviors=6)
            >>> items = torch.randint(1, 500, (2, 100))
            >>> model.eval().rank_candidates(batch, items, items % 19 + 1).shape
            torch.Size([2, 100])
        """
        if candidate_items.dim() != 2 or candidate_items.shape != candidate_categories.shape:
            raise ValueError(
                "candidate_items and candidate_categories must both be [B, C], got "
                f"{tuple(candidate_items.shape)} and {tuple(candidate_categories.shape)}"
            )
        b, c = candidate_items.shape
        if b != batch.history_lengths.shape[0]:
            raise ValueError(
                f"{b} rows of candidates for a batch of {batch.history_lengths.shape[0]}"
            )
        history_ids = batch.items.values().view(len(ITEM_SIDE_KEYS), -1)[:, b:]  # [3, N]
        candidate_ids = torch.stack(
            [
                candidate_items.reshape(-1),
                candidate_categories.reshape(-1),
                torch.zeros_like(candidate_items.reshape(-1)),  # candidates carry no behavior
            ]
        ).to(history_ids.dtype)
        values = torch.cat([candidate_ids, history_ids], dim=1)  # [3, B*C + N], key-major
        rows = values.shape[1]
        items = KeyedJaggedTensor(
            keys=list(ITEM_SIDE_KEYS),
            values=values.reshape(-1),
            lengths=torch.ones(values.numel(), dtype=torch.int32, device=values.device),
            stride=rows,
        )
        return self.head.rank(
            self.user_ebc(batch.users),
            self.item_ebc(items),
            values.reshape(-1),
            batch.history_lengths,
            batch.history_age,
            batch.history_numeric,
            c,
        )
