"""A complete CTR model: TorchRec sparse arch + one sequence encoder + an over-arch MLP.

Shapes: B samples, N = sum of history lengths, E = ``embedding_dim`` per id table,
D = 2E (item and category embeddings concatenated), D_b = ``behavior_dim``, F numeric fields.

The model reads a batch by attribute (``pipelines.data.batch.Batch`` or any object with the same
fields): ``users`` (KJT, stride B), ``items`` (KJT, keys item_id / category_id / behavior_id,
candidate rows first, then every history position, or only the R positions ``history_rows``
names), ``item_ids`` (``[3, B + N]``, every id), ``history_lengths``, ``history_age``,
``history_numeric``, ``history_rows``. The top-level ``forward`` only calls the two
EmbeddingBagCollections on batch attributes and hands everything else to one unsharded child
(``head``, :mod:`components.head`): TorchRec's ``TrainPipelineSparseDist`` traces exactly this
shape and can then input-dist the next batch while the current one trains.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torchrec import (
    EmbeddingBagCollection,
    EmbeddingBagConfig,
    KeyedJaggedTensor,
    PoolingType,
)

from components.head import ITEM_SIDE_KEYS, SequenceHead, split_item_side
from components.model_config import GROUP_KEYS, ModelConfig, ModelOutput, Vocab
from components.ops.symbolic import fx_tracing

__all__ = [
    "GROUP_KEYS",
    "ITEM_SIDE_KEYS",
    "LifelongCTRModel",
    "ModelConfig",
    "ModelOutput",
    "SequenceHead",
    "Vocab",
    "sparse_arch",
    "split_item_side",
]


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


class LifelongCTRModel(nn.Module):
    """User/item EmbeddingBagCollections + :class:`SequenceHead`.

    ``item_to_group`` ([items] group of each item) serves ``group_key='cluster'``;
    ``content_embeddings`` ([items, d] frozen content vectors) feed encoders that take them
    (CiUBM). ``numeric_scaling`` = ``(center [F], scale [F])`` of the numeric event fields
    (``components.layers.numeric.fit_numeric_scaling`` on training data); without it they only
    get the signed log.

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
        numeric_scaling: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        self.user_ebc, self.item_ebc = sparse_arch(config, vocab, device)
        self.head = SequenceHead(config, vocab, item_to_group, content_embeddings, numeric_scaling)
        #: under FX symbolic tracing ``batch.history_rows`` is a Proxy, never None: when the
        #: head is traced too, :func:`components.tracing.trace_model` fixes the path with this
        #: (False: no lookup plan, True: with one; None: pass the attribute through, as a
        #: leaf head needs)
        self.fx_lookup_plan: bool | None = None

    def forward(self, batch: Any) -> ModelOutput:
        user_kt = self.user_ebc(batch.users)
        item_kt = self.item_ebc(batch.items)
        rows = batch.history_rows
        if self.fx_lookup_plan is False and fx_tracing():
            rows = None
        return self.head(
            user_kt,
            item_kt,
            batch.item_ids,
            batch.history_lengths,
            batch.history_age,
            batch.history_numeric,
            rows,
        )

    @torch.no_grad()
    def history_rows(self, batch: Any) -> torch.Tensor | None:
        """``[R]`` int64: the history rows of ``batch`` (indices into N) this model's forward
        reads embeddings of, found from ids alone before any lookup; None when it reads all
        (DINFull, SIMSoft, ETA). ``pipelines.data.batch.restrict_item_lookup`` then makes the
        item EBC look up only those: the model's output and every gradient stay the same, and
        a lifelong history costs O(R) embedding rows instead of O(N). Computed where the head
        lives (its group and content tables), returned on ``batch``'s device.

        Example:
            >>> from pipelines.data.batch import random_batch, restrict_item_lookup
            >>> model = LifelongCTRModel(ModelConfig(encoder="SIMHard"), Vocab(100, 500, 20, 6, 1))
            >>> batch = random_batch([3000, 20], users=100, items=500, categories=20,
            ...                      behaviors=6, num_numeric=1)
            >>> rows = model.history_rows(batch)
            >>> int(rows.numel()) <= 2 * model.head.encoder.config.top_k
            True
            >>> small = restrict_item_lookup(batch, rows)
            >>> torch.allclose(model(small).logits, model(batch).logits)
            True
        """
        device = next(self.head.parameters()).device
        rows = self.head.history_rows(
            *(
                tensor.to(device)
                for tensor in (
                    batch.item_ids,
                    batch.history_lengths,
                    batch.history_age,
                    batch.history_numeric,
                )
            )
        )
        return None if rows is None else rows.to(batch.item_ids.device)

    def rank_candidates(
        self, batch: Any, candidate_items: torch.Tensor, candidate_categories: torch.Tensor
    ) -> torch.Tensor:
        """Logits ``[B, C]`` of C candidates for each user of ``batch`` (serving / re-ranking).

        ``candidate_items``, ``candidate_categories``: ``[B, C]`` int64. The user side (user id,
        history) comes from ``batch``; its own candidate row is ignored. Column c equals
        ``model(batch).logits`` for the batch whose candidate is c. The history is looked up
        once, not C times, and DMGIN encodes it once (``forward_candidates``); the other
        encoders score C copies of it. Meant for an unsharded model in eval mode, e.g. one
        loaded by ``pipelines.serve.plain_model.load_plain_model`` from a trainer checkpoint.

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
        history_ids = batch.item_ids[:, b:]  # [3, N]
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
