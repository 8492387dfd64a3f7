"""Train and evaluate a lifelong-sequence CTR model on sharded TorchRec tables.

Usage (one process, or any number under torchrun)::

    python -m pipelines.train --config recipes/configs/ml1m_dmgin.yaml [key=value ...] [--resume]
    python -m pipelines.train --config ... --resume-from OUTPUT_DIR/checkpoints/step_00000200
    torchrun --nproc-per-node 2 -m pipelines.train --config ... train.output_dir=runs/x

Every embedding table is sharded by DistributedModelParallel (table-wise or column-wise, chosen
by the planner; both work on CPU) and updated by a fused in-backward optimizer; all other
parameters by Adam/AdamW. Training runs through ``TrainPipelineSparseDist``. After each epoch the
valid split is scored (AUC, GAUC, logloss); ``metrics.jsonl`` gets one line per evaluation,
TensorBoard gets the same scalars, and ``metrics.json`` holds the final summary.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import resource
import sys
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torch.utils.tensorboard import SummaryWriter
from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
from torchrec.distributed.model_parallel import DistributedModelParallel
from torchrec.distributed.planner import EmbeddingShardingPlanner, Topology
from torchrec.distributed.planner.types import ParameterConstraints
from torchrec.distributed.train_pipeline import EvalPipelineSparseDist, TrainPipelineSparseDist
from torchrec.modules.embedding_modules import EmbeddingBagCollection
from torchrec.optim.apply_optimizer_in_backward import apply_optimizer_in_backward
from torchrec.optim.keyed import CombinedOptimizer, KeyedOptimizerWrapper
from torchrec.optim.optimizers import in_backward_optimizer_filter
from torchrec.optim.rowwise_adagrad import RowWiseAdagrad
from tqdm import tqdm

from components.model import LifelongCTRModel, Vocab
from pipelines.checkpoint import (
    TrainerState,
    latest_checkpoint,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)
from pipelines.config import ConfigError, ExperimentConfig, load_config, to_dict
from pipelines.data.batch import Batch
from pipelines.data.loader import LoaderConfig, SampleLoader
from pipelines.data.prepared import PreparedDataset
from pipelines.distributed import DistributedContext, init_distributed, shutdown
from pipelines.metrics import compute_metrics
from pipelines.model_wrapper import TrainWrapper

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


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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
    table[torch.from_numpy(frame["item"].to_numpy())] = torch.from_numpy(frame["group"].to_numpy())
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
    model = LifelongCTRModel(
        config.model, vocab, item_to_group=item_to_group, content_embeddings=content
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
        apply_optimizer_in_backward(sparse_cls, ebc.parameters(), {"lr": config.optim.sparse_lr})
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


def make_loader(
    config: ExperimentConfig, split: str, ctx: DistributedContext, train: bool
) -> SampleLoader:
    base = config.loader
    cfg = (
        LoaderConfig(**{**base.__dict__, "drop_last": True})
        if train
        else LoaderConfig(
            **{
                **base.__dict__,
                "batch_size": config.train.eval_batch_size,
                "shuffle": False,
                "drop_last": False,
            }
        )
    )
    return SampleLoader(config.data.dataset, split, cfg, rank=ctx.rank, world_size=ctx.world_size)


@torch.no_grad()
def evaluate(
    dmp: DistributedModelParallel, loader: SampleLoader, ctx: DistributedContext
) -> tuple[dict[str, float], pd.DataFrame | None]:
    """Score a split on every rank, gather to rank 0, compute metrics there, share them.

    Batches go through TorchRec's ``EvalPipelineSparseDist``: a background thread loads the next
    batch and the sharded tables' input dist of batch i + 1 overlaps the forward of batch i.
    The pipeline returns only the model output (``TrainWrapper``'s tuple), so the sample columns
    of each batch (user, candidate item, ts, label, weight: ``[B]`` each) are recorded as the
    pipeline pulls it; batches come back in order, and the user ids of every output are checked
    against the recorded ones. Weight-0 rows (padding that keeps ranks' batch counts equal) are
    dropped on rank 0; the metrics are broadcast, the predictions frame stays on rank 0.
    """
    dmp.eval()
    pulled: deque[dict[str, np.ndarray]] = deque()  # appended by the pipeline's loading thread

    def recorded() -> Iterator[Batch]:
        for batch in loader:
            b = batch.batch_size
            pulled.append(
                {
                    "user": batch.user_ids.numpy().copy(),
                    "item": batch.items.values()[:b].numpy().copy(),
                    "ts": batch.timestamps.numpy().copy(),
                    "label": batch.labels.numpy().copy(),
                    "w": batch.weights.numpy().copy(),
                }
            )
            yield batch

    # the eval pipeline never steps an optimizer
    pipeline: EvalPipelineSparseDist = EvalPipelineSparseDist(
        dmp, cast(torch.optim.Optimizer, None), ctx.device
    )
    parts: dict[str, list[np.ndarray]] = {
        k: [] for k in ("user", "item", "ts", "label", "pred", "w")
    }
    batches = recorded()
    try:
        while True:
            try:
                _, logits, _, _, users = pipeline.progress(batches)
            except StopIteration:
                break
            meta = pulled.popleft()
            if not np.array_equal(users.cpu().numpy(), meta["user"]):
                raise RuntimeError("eval pipeline returned batches out of order")
            for key, value in meta.items():
                parts[key].append(value)
            parts["pred"].append(torch.sigmoid(logits.float()).cpu().numpy())
    finally:
        pipeline.reset()  # stops the loading thread
        pipeline.detach()  # restores the sharded modules' forwards for the next train pipeline
    local = {k: np.concatenate(v) if v else np.zeros(0) for k, v in parts.items()}
    gathered: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(gathered, local)
    result: list[Any] = [None, None]
    if ctx.is_main:
        merged = {k: np.concatenate([g[k] for g in gathered]) for k in local}
        keep = merged["w"] > 0
        frame = pd.DataFrame(
            {
                "user": merged["user"][keep].astype(np.int64),
                "item": merged["item"][keep].astype(np.int64),
                "ts": merged["ts"][keep].astype(np.int64),
                "label": merged["label"][keep].astype(np.float32),
                "prediction": merged["pred"][keep].astype(np.float64),
            }
        )
        metrics = compute_metrics(frame["label"], frame["prediction"], user_ids=frame["user"])
        result = [metrics, frame]
    dist.broadcast_object_list(result, src=0)
    dmp.train()
    return result[0], result[1] if ctx.is_main else None


class MetricsLog:
    """Rank 0's metrics.jsonl + TensorBoard writer."""

    def __init__(self, output_dir: Path, enabled: bool) -> None:
        self.enabled = enabled
        self.path = output_dir / "metrics.jsonl"
        self.writer = SummaryWriter(str(output_dir / "tensorboard")) if enabled else None

    def write(self, record: dict[str, Any], step: int) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
        assert self.writer is not None
        for key, value in record.items():
            if isinstance(value, int | float) and key not in ("epoch", "step"):
                self.writer.add_scalar(f"{record.get('split', 'train')}/{key}", value, step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def train(config: ExperimentConfig, resume: str | bool = False) -> dict[str, Any]:
    """Run the experiment; returns the final summary (also written to metrics.json)."""
    ctx = init_distributed(config.train.device)
    if ctx.device.type == "cpu" and config.optim.sparse == "adam":
        raise ConfigError("optim.sparse: fused Adam is not available on CPU; use rowwise_adagrad")
    out = Path(config.train.output_dir)
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
    seed_everything(config.train.seed)
    model, _ = build_model(config)
    dmp, optimizer, dense_optimizer = shard_model(model, config, ctx)
    state = TrainerState()
    resume_from = latest_checkpoint(out) if resume is True else (Path(resume) if resume else None)
    if resume_from is not None:
        dense_optimizer.init_state()  # Adam's moments are lazy: create them to load in place
        state = load_checkpoint(resume_from, dmp, optimizer)
        restore_rng(state.rng)
    log = MetricsLog(out, ctx.is_main)
    train_loader = make_loader(config, "train", ctx, train=True)
    valid_loader = make_loader(config, "valid", ctx, train=False)
    started = time.time()
    samples_seen = 0
    stop = False
    steps_per_epoch = len(train_loader)
    for epoch in range(state.epoch, config.train.epochs):
        train_loader.set_epoch(epoch)
        batches = itertools.islice(iter(train_loader), state.step_in_epoch, None)
        pipeline = TrainPipelineSparseDist(dmp, optimizer, ctx.device)
        bar = tqdm(
            total=steps_per_epoch,
            initial=state.step_in_epoch,
            desc=f"epoch {epoch}",
            disable=not ctx.is_main,
            dynamic_ncols=True,
        )
        epoch_start = time.time()
        running = []
        while True:
            try:
                loss, *_ = pipeline.progress(batches)
            except StopIteration:
                break
            state.step_in_epoch += 1
            state.global_step += 1
            samples_seen += config.loader.batch_size * ctx.world_size
            running.append(float(loss))
            bar.update(1)
            if state.global_step % config.train.log_every == 0:
                rate = samples_seen / max(time.time() - started, 1e-9)
                bar.set_postfix(loss=f"{np.mean(running[-50:]):.4f}", samples_s=f"{rate:.0f}")
                log.write(
                    {
                        "split": "train",
                        "epoch": epoch,
                        "step": state.global_step,
                        "loss": float(np.mean(running[-config.train.log_every :])),
                        "samples_per_s": rate,
                    },
                    state.global_step,
                )
            if (
                config.train.checkpoint_every
                and state.global_step % config.train.checkpoint_every == 0
            ):
                save_checkpoint(
                    out,
                    state,
                    dmp,
                    optimizer,
                    to_dict(config),
                    config.train.keep_checkpoints,
                    ctx.rank,
                )
            if config.train.max_steps and state.global_step >= config.train.max_steps:
                stop = True
                break
        bar.close()
        pipeline.detach()
        metrics, predictions = evaluate(dmp, valid_loader, ctx)
        record = {
            "split": "valid",
            "epoch": epoch,
            "step": state.global_step,
            "train_loss": float(np.mean(running)) if running else float("nan"),
            "epoch_seconds": time.time() - epoch_start,
            **metrics,
        }
        state.history.append(record)
        log.write(record, state.global_step)
        if ctx.is_main:
            print(json.dumps(record, sort_keys=True), flush=True)
            if config.train.save_predictions and predictions is not None:
                _write_parquet(predictions, out / "predictions_valid.parquet")
        if not metrics["auc"] <= state.best_valid_auc:  # also true for the first (NaN) best
            state.best_valid_auc = metrics["auc"]
        state.epoch, state.step_in_epoch = epoch + 1, 0
        save_checkpoint(
            out, state, dmp, optimizer, to_dict(config), config.train.keep_checkpoints, ctx.rank
        )
        if stop:
            break
    summary: dict[str, Any] = {
        "model": config.model.encoder,
        "dataset": config.data.dataset,
        "world_size": ctx.world_size,
        "steps": state.global_step,
        "train_seconds": time.time() - started,
        "peak_rss_mib": peak_rss_mib(),
        "valid": state.history[-1] if state.history else None,
        "best_valid_auc": state.best_valid_auc,
    }
    if config.train.eval_test:
        test_metrics, test_predictions = evaluate(dmp, make_loader(config, "test", ctx, False), ctx)
        summary["test"] = test_metrics
        log.write(
            {"split": "test", "epoch": state.epoch, "step": state.global_step, **test_metrics},
            state.global_step,
        )
        if ctx.is_main and config.train.save_predictions and test_predictions is not None:
            _write_parquet(test_predictions, out / "predictions_test.parquet")
    if ctx.is_main:
        tmp = out / "metrics.json.tmp"
        tmp.write_text(json.dumps(summary, indent=2, sort_keys=True, default=float) + "\n")
        tmp.replace(out / "metrics.json")
        print(
            json.dumps(
                {"final": summary.get("test") or summary["valid"]}, sort_keys=True, default=float
            )
        )
    log.close()
    return summary


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    tmp = path.with_suffix(".parquet.tmp")
    frame.to_parquet(tmp, index=False)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="YAML experiment config")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="resume from the latest checkpoint in train.output_dir",
    )
    parser.add_argument(
        "--resume-from", metavar="DIR", help="resume from this checkpoint directory"
    )
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.epochs=2")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config, args.overrides)
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return 2
    try:
        train(config, resume=args.resume_from or args.resume)
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return 2
    finally:
        shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
