"""Train and evaluate a lifelong-sequence CTR model on sharded TorchRec tables.

Usage (one process, or any number under torchrun)::

    python -m pipelines.train --config recipes/configs/ml1m_dmgin.yaml [key=value ...] [--resume]
    python -m pipelines.train --config ... --resume-from OUTPUT_DIR/checkpoints/step_00000200
    torchrun --nproc-per-node 2 -m pipelines.train --config ... train.output_dir=runs/x

Every embedding table is sharded by DistributedModelParallel (table-wise or column-wise, chosen
by the planner; both work on CPU) and updated by a fused in-backward optimizer; all other
parameters by Adam/AdamW (``pipelines.train.model_setup``). Training runs through
``TrainPipelineSparseDist``. After each epoch the valid split is scored (AUC, GAUC, logloss;
``pipelines.evaluate.evaluation``); ``metrics.jsonl`` gets one line per evaluation,
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
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.tensorboard import SummaryWriter
from torchrec.distributed.train_pipeline import TrainPipelineSparseDist

from pipelines.console import parse_cli, progress
from pipelines.data.loader import LoaderConfig, SampleLoader
from pipelines.evaluate.evaluation import evaluate
from pipelines.train.checkpoint import (
    TrainerState,
    latest_checkpoint,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)
from pipelines.train.config import ConfigError, ExperimentConfig, load_config, to_dict
from pipelines.train.distributed import DistributedContext, init_distributed, shutdown
from pipelines.train.lookup_plan import LookupPlanner
from pipelines.train.model_setup import build_model, shard_model


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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
    # kept before sharding: the planner needs the head (encoder, group table), not the tables
    planner = LookupPlanner(model) if config.train.lookup_plan else None
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
        if planner is not None:
            batches = planner.over(batches)
        pipeline = TrainPipelineSparseDist(dmp, optimizer, ctx.device)
        bar = progress(
            total=steps_per_epoch,
            initial=state.step_in_epoch,
            desc=f"epoch {epoch}",
            unit="step",
            disable=not ctx.is_main,
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
        metrics, predictions = evaluate(dmp, valid_loader, ctx, planner)
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
        test_loader = make_loader(config, "test", ctx, False)
        test_metrics, test_predictions = evaluate(dmp, test_loader, ctx, planner)
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
    args = parse_cli(parser, argv)
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
