"""Build the CTR model of an experiment config and shard it for training.

``build_model`` reads the prepared dataset's vocabulary and the config's side tables (item ->
group parquet, content .npy); ``shard_model`` wraps it in DistributedModelParallel with every
embedding table updated by a fused in-backward optimizer and the dense parameters by
Adam/AdamW. The trainer and the cost benchmark use the same two functions, so a benchmark step is
the step ``pipelines.train`` runs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
from torchrec.distributed.model_parallel import DistributedModelParallel
from torchrec.distributed.planner import EmbeddingShardingPlanner, Topology
from torchrec.distributed.planner.types import ParameterConstraints
from torchrec.modules.embedding_modules import EmbeddingBagCollection
from torchrec.optim.apply_optimizer_in_backward import apply_optimizer_in_backward
from torchrec.optim.keyed import CombinedOptimizer, KeyedOptimizerWrapper
from torchrec.optim.optimizers import in_backward_optimizer_filter
from torchrec.optim.rowwise_adagrad import RowWiseAdagrad

from components.model import LifelongCTRModel, Vocab
from pipelines.data.numeric import numeric_scaling
from pipelines.data.prepared import PreparedDataset
from pipelines.train.config import ExperimentConfig
from pipelines.train.distributed import DistributedContext
from pipelines.train.model_wrapper import TrainWrapper

SPARSE_OPTIMIZER_CLASSES: dict[str, type] = {
    "rowwise_adagrad": RowWiseAdagrad,
    "adagrad": torch.optim.Adagrad,
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
}
DENSE_OPTIMIZER_CLASSES: dict[str, type] = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
    "adagrad": torch.optim.Adagrad,
}


def build_vocab(dataset: PreparedDataset, item_to_group: torch.Tensor | None) -> Vocab:
    """Vocabulary sizes of a prepared dataset (``groups`` from the item -> group table)."""
    v = dataset.vocab
    groups = int(item_to_group.max()) + 1 if item_to_group is not None else None
    return Vocab(
        users=v["users"],
        items=v["items"],
        categories=v["categories"],
        behaviors=v["behaviors"],
        num_numeric=len(dataset.numeric_fields),
        groups=groups,
    )


def load_item_to_group(path: str | None, num_items: int) -> torch.Tensor | None:
    """``[num_items]`` group of each item index from an ``item, group`` parquet (0 = unknown)."""
    if not path:
        return None
    frame = pd.read_parquet(path, columns=["item", "group"])
    if frame["item"].max() >= num_items:
        raise ValueError(
            f"{path}: column 'item' has index {frame['item'].max()} >= vocab {num_items}"
        )
    table = torch.zeros(num_items, dtype=torch.int64)
    # copies: pyarrow-backed columns can be read-only, which torch.from_numpy warns about
    items = torch.from_numpy(frame["item"].to_numpy(dtype=np.int64, copy=True))
    table[items] = torch.from_numpy(frame["group"].to_numpy(dtype=np.int64, copy=True))
    return table


def build_model(config: ExperimentConfig) -> tuple[LifelongCTRModel, PreparedDataset]:
    dataset = PreparedDataset.open(config.data.dataset)
    item_to_group = load_item_to_group(config.data.groups, dataset.vocab["items"])
    vocab = build_vocab(dataset, item_to_group)
    content = None
    if config.data.content:
        content = torch.from_numpy(np.load(config.data.content)).float()
        if content.shape[0] != vocab.items:
            raise ValueError(
                f"{config.data.content}: {content.shape[0]} rows, expected {vocab.items} (item vocab)"
            )
    scaling = numeric_scaling(dataset) if config.model.numeric_scaling else None
    model = LifelongCTRModel(
        config.model,
        vocab,
        item_to_group=item_to_group,
        content_embeddings=content,
        numeric_scaling=scaling,
    )
    return model, dataset


def shard_model(
    model: LifelongCTRModel, config: ExperimentConfig, ctx: DistributedContext
) -> tuple[DistributedModelParallel, CombinedOptimizer, KeyedOptimizerWrapper]:
    """DMP over ``TrainWrapper(model)`` with fused sparse + Adam dense optimizers.

    Returns the model, the combined optimizer and its dense part (whose lazy state must be
    initialised before a checkpoint can be loaded into it in place).

    The unsharded model's initial weights are loaded into the sharded one, so the result does not
    depend on the world size.
    """
    wrapper = TrainWrapper(model, config.train.aux_loss_weight)
    initial = {k: v.detach().clone() for k, v in wrapper.state_dict().items()}
    ebcs = [m for m in wrapper.modules() if isinstance(m, EmbeddingBagCollection)]
    sparse_cls = SPARSE_OPTIMIZER_CLASSES[config.optim.sparse]
    for ebc in ebcs:
        sparse_kwargs: dict[str, Any] = {"lr": config.optim.sparse_lr}
        if config.optim.sparse_weight_decay:
            sparse_kwargs["weight_decay"] = config.optim.sparse_weight_decay
        apply_optimizer_in_backward(sparse_cls, ebc.parameters(), sparse_kwargs)
    tables = [t.name for ebc in ebcs for t in ebc.embedding_bag_configs()]
    # data_parallel tables would escape the fused optimizer; row_wise needs a hand-built plan
    # on CPU (DESIGN.md section 7). Table-wise and column-wise work everywhere.
    constraints = {
        name: ParameterConstraints(sharding_types=["table_wise", "column_wise"]) for name in tables
    }
    planner = EmbeddingShardingPlanner(
        topology=Topology(world_size=ctx.world_size, compute_device=ctx.device.type),
        constraints=constraints,
    )
    sharders = [EmbeddingBagCollectionSharder()]
    plan = planner.collective_plan(wrapper, sharders, dist.GroupMember.WORLD)
    dmp = DistributedModelParallel(wrapper, device=ctx.device, plan=plan, sharders=sharders)
    dmp.load_state_dict(initial)
    dense_cls = DENSE_OPTIMIZER_CLASSES[config.optim.dense]
    dense_kwargs: dict[str, Any] = {"lr": config.optim.dense_lr}
    if config.optim.weight_decay:
        dense_kwargs["weight_decay"] = config.optim.weight_decay
    dense = KeyedOptimizerWrapper(
        dict(in_backward_optimizer_filter(dmp.named_parameters())),
        lambda params: dense_cls(params, **dense_kwargs),
    )
    return dmp, CombinedOptimizer([dmp.fused_optimizer, dense]), dense
