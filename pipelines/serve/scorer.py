"""`TensorScorer`: a trained :class:`~components.model.LifelongCTRModel` as a function of the
plain tensors the loader produces (no KeyedJaggedTensor, no ``Batch``), the form
``pipelines.export`` writes and ``pipelines.score`` runs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchrec import EmbeddingBagCollection, KeyedTensor, PoolingType

from components.model import LifelongCTRModel
from pipelines.data.batch import Batch
from pipelines.serve.dense import DenseRanker

#: positional inputs of :class:`TensorScorer` (name, shape, dtype)
INPUTS: tuple[tuple[str, str, str], ...] = (
    ("user", "[B]", "int64"),
    ("item", "[B]", "int64"),
    ("category", "[B]", "int64"),
    ("history_lengths", "[B]", "int64"),
    ("history_item", "[N]", "int64"),
    ("history_category", "[N]", "int64"),
    ("history_behavior", "[N]", "int64"),
    ("history_age", "[N]", "float32"),
    ("history_numeric", "[N, F]", "float32"),
)


def one_id_lookup(ebc: EmbeddingBagCollection, ids: dict[str, torch.Tensor]) -> KeyedTensor:
    """The EBC's output for bags of exactly one id each, as plain row gathers.

    ``ids`` maps every feature of ``ebc`` to ``[R]`` int64 ids (one id per bag); the result is
    the ``KeyedTensor [R, sum of dims]`` the EBC returns for the equivalent KJT (a SUM or MEAN
    bag of one row is that row), without building a KeyedJaggedTensor (the serving state
    builds rows for one user at a time).
    """
    keys: list[str] = []
    dims: list[int] = []
    values: list[torch.Tensor] = []
    for config in ebc.embedding_bag_configs():
        if config.pooling not in (PoolingType.SUM, PoolingType.MEAN):
            raise ValueError(f"table {config.name}: pooling {config.pooling} is not one-id safe")
        weight = ebc.embedding_bags[config.name].weight
        for feature in config.feature_names:
            keys.append(feature)
            dims.append(config.embedding_dim)
            values.append(F.embedding(ids[feature], weight))
    return KeyedTensor(keys=keys, length_per_key=dims, values=torch.cat(values, dim=1))


class TensorScorer(nn.Module):
    """A :class:`LifelongCTRModel` as a function of plain tensors (export-friendly).

    forward(user [B], item [B], category [B], history_lengths [B], history_item [N],
    history_category [N], history_behavior [N], history_age [N], history_numeric [N, F])
    -> prediction [B] float32 in (0, 1), equal to ``sigmoid(model(batch).logits)`` for the
    ``Batch`` holding the same samples (rows ``[B, B + N)`` of the item side are the histories of
    samples 0..B-1 concatenated, oldest -> newest, exactly as the loader lays them out).
    """

    def __init__(self, model: LifelongCTRModel) -> None:
        super().__init__()
        self.model = model
        self.dense = DenseRanker(model.head)

    def forward(
        self,
        user: torch.Tensor,
        item: torch.Tensor,
        category: torch.Tensor,
        history_lengths: torch.Tensor,
        history_item: torch.Tensor,
        history_category: torch.Tensor,
        history_behavior: torch.Tensor,
        history_age: torch.Tensor,
        history_numeric: torch.Tensor,
    ) -> torch.Tensor:
        # the sparse part as plain row gathers (a SUM bag of one id is that row, bit for bit),
        # then the dense part as for C = 1 candidate per user: one path that torch.export keeps
        # symbolic in B and N (pipelines.serve.dense)
        tables = self.model.item_ebc.embedding_bags
        _check_one_id_pooling(self.model.user_ebc, self.model.item_ebc)

        def item_side(items: torch.Tensor, categories: torch.Tensor) -> torch.Tensor:
            return torch.cat(
                [
                    F.embedding(items, tables["item"].weight),
                    F.embedding(categories, tables["category"].weight),
                ],
                dim=1,
            )

        probability = self.dense(
            F.embedding(user, self.model.user_ebc.embedding_bags["user"].weight),
            item_side(item, category).unsqueeze(1),
            item.unsqueeze(1),
            category.unsqueeze(1),
            item_side(history_item, history_category),
            F.embedding(history_behavior, tables["behavior"].weight),
            history_item,
            history_category,
            history_behavior,
            history_lengths,
            history_age,
            history_numeric,
        )
        return probability.squeeze(1)


def _check_one_id_pooling(*collections: EmbeddingBagCollection) -> None:
    """The row gathers equal the EBC only for SUM / MEAN pooling of one-id bags."""
    for ebc in collections:
        for config in ebc.embedding_bag_configs():
            if config.pooling not in (PoolingType.SUM, PoolingType.MEAN):
                raise ValueError(
                    f"table {config.name}: pooling {config.pooling} is not one-id safe"
                )


def batch_tensors(batch: Batch) -> tuple[torch.Tensor, ...]:
    """The :data:`INPUTS` of :class:`TensorScorer` for a loader ``Batch`` (B samples, N rows)."""
    b = batch.batch_size
    ids = batch.item_ids  # [3, B + N]
    item, category, behavior = ids[0], ids[1], ids[2]
    return (
        batch.user_ids,
        item[:b],
        category[:b],
        batch.history_lengths,
        item[b:],
        category[b:],
        behavior[b:],
        batch.history_age,
        batch.history_numeric,
    )
