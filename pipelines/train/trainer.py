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
import sys
import time
from dataclasses import asdict
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
    best_checkpoint,
    latest_checkpoint,
    load_checkpoint,
    load_model_state,
    restore_rng,
    save_best,
    save_checkpoint,
)
from pipelines.train.config import ConfigError, ExperimentConfig, load_config, to_dict
from pipelines.train.distributed import DistributedContext, init_distributed, shutdown
from pipelines.train.lookup_plan import LookupPlanner
from pipelines.train.memory import peak_rss_mib as _peak_rss_mib
from pipelines.train.model_setup import build_model, shard_model
from pipelines.train.schedule import LrSchedule, LrScheduler
from pipelines.train.selection import Selection


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
    return _peak_rss_mib()


def _lr_schedule(config: ExperimentConfig, steps_per_epoch: int) -> LrSchedule:
    total = config.train.epochs * steps_per_epoch
    if config.train.max_steps:
        total = min(total, config.train.max_steps)
    o = config.optim
    return LrSchedule(o.warmup_steps, o.lr_decay, total, o.min_lr_factor)


def _chunks(start: int, total: int, eval_every: int, global_step: int) -> list[int]:
    """Sizes of the runs of steps between valid evaluations inside one epoch.

    ``start`` steps of the epoch are done, ``total`` in all; with ``eval_every`` a run ends at
    each multiple of it in global steps (so a resumed run evaluates at the same steps).
    """
    left = total - start
    if not eval_every or left <= 0:
        return [left] if left > 0 else []
    sizes, step = [], global_step
    while left > 0:
        size = min(left, eval_every - step % eval_every)
        sizes.append(size)
        left -= size
        step += size
    return sizes


def train(config: ExperimentConfig, resume: str | bool = False) -> dict[str, Any]:
    """Run the experiment; returns the final summary (also written to metrics.json).

    The valid split is scored at each epoch end (and every ``train.eval_every`` steps); the best
    state by ``train.select_metric`` is kept in ``checkpoints/best``; ``train.patience``
    evaluations without improvement stop early; the test split is scored with the best state
    (``train.test_state``), and ``metrics.json`` says which (``test_state``, ``best``).
    """
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
    train_loader = make_loader(config, "train", ctx, train=True)
    valid_loader = make_loader(config, "valid", ctx, train=False)
    steps_per_epoch = len(train_loader)
    # built before a checkpoint is loaded: its base rates are the config's
    scheduler = LrScheduler(optimizer, _lr_schedule(config, steps_per_epoch))
    state = TrainerState()
    resume_from = latest_checkpoint(out) if resume is True else (Path(resume) if resume else None)
    if resume_from is not None:
        dense_optimizer.init_state()  # Adam's moments are lazy: create them to load in place
        state = load_checkpoint(resume_from, dmp, optimizer)
        restore_rng(state.rng)
    kept = {k: v for k, v in state.selection.items() if k not in ("metric", "patience")}
    selection = Selection(config.train.select_metric, config.train.patience, **kept)
    log = MetricsLog(out, ctx.is_main)
    started = time.time()
    samples_seen = 0
    stop = stopped_early = False

    def validate(epoch: int, running: list[float], seconds: float) -> None:
        nonlocal stopped_early
        metrics, predictions = evaluate(dmp, valid_loader, ctx, planner)
        record = {
            "split": "valid",
            "epoch": epoch,
            "step": state.global_step,
            "train_loss": float(np.mean(running)) if running else float("nan"),
            "epoch_seconds": seconds,
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
        # every rank holds the same (broadcast) metrics, so all take the same decisions
        improved = selection.update(metrics[selection.metric], state.global_step, epoch)
        state.selection = asdict(selection)
        if improved:
            info = {"metric": selection.metric, "value": selection.best_value,
                    "epoch": epoch, "step": state.global_step}  # fmt: skip
            save_best(out, state, dmp, to_dict(config), info, ctx.rank)
        stopped_early = selection.should_stop

    for epoch in range(state.epoch, config.train.epochs):
        train_loader.set_epoch(epoch)
        batches = itertools.islice(iter(train_loader), state.step_in_epoch, None)
        if planner is not None:
            batches = planner.over(batches)
        bar = progress(
            total=steps_per_epoch,
            initial=state.step_in_epoch,
            desc=f"epoch {epoch}",
            unit="step",
            disable=not ctx.is_main,
        )
        epoch_start = time.time()
        running: list[float] = []
        chunks = _chunks(state.step_in_epoch, steps_per_epoch, config.train.eval_every,
                         state.global_step)  # fmt: skip
        for chunk, size in enumerate(chunks):
            # one pipeline per run of steps between evaluations: it drains its batches
            pipeline = TrainPipelineSparseDist(dmp, optimizer, ctx.device)
            part = itertools.islice(batches, size)
            while True:
                scheduler.apply(state.global_step)
                try:
                    loss, *_ = pipeline.progress(part)
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
                            "lr_factor": scheduler.schedule.factor(state.global_step - 1),
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
            pipeline.detach()
            if stop or chunk == len(chunks) - 1:
                break
            validate(epoch, running, time.time() - epoch_start)
            if stopped_early:
                break
        bar.close()
        if not stopped_early:
            validate(epoch, running, time.time() - epoch_start)
        state.epoch, state.step_in_epoch = epoch + 1, 0
        save_checkpoint(
            out, state, dmp, optimizer, to_dict(config), config.train.keep_checkpoints, ctx.rank
        )
        if stop or stopped_early:
            break
    summary: dict[str, Any] = {
        "model": config.model.encoder,
        "dataset": config.data.dataset,
        "world_size": ctx.world_size,
        "steps": state.global_step,
        "train_seconds": time.time() - started,
        "peak_rss_mib": peak_rss_mib(),
        "valid": state.history[-1] if state.history else None,
        # the valid evaluation of the kept best state (the one the test split is scored with)
        "best_valid": next(
            (r for r in state.history if r.get("step") == selection.best_step), None
        ),
        "best_valid_auc": state.best_valid_auc,
        "best": {
            "metric": selection.metric,
            "value": selection.best_value,
            "epoch": selection.best_epoch,
            "step": selection.best_step,
        },
        "early_stopped": stopped_early,
    }
    if config.train.eval_test:
        best = best_checkpoint(out)
        use_best = config.train.test_state == "best" and best is not None
        if use_best and selection.best_step != state.global_step:
            load_model_state(best, dmp)
        summary["test_state"] = (
            f"best (epoch {selection.best_epoch}, step {selection.best_step})"
            if use_best
            else f"last (step {state.global_step})"
        )
        test_loader = make_loader(config, "test", ctx, False)
        test_metrics, test_predictions = evaluate(dmp, test_loader, ctx, planner)
        summary["test"] = test_metrics
        log.write(
            {"split": "test", "epoch": state.epoch, "step": state.global_step,
             "scored_step": selection.best_step if use_best else state.global_step,
             **test_metrics},
            state.global_step,
        )  # fmt: skip
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
