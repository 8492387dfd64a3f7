"""Distributed checkpoints with torch.distributed.checkpoint (DCP), written atomically.

A checkpoint is a directory ``OUTPUT_DIR/checkpoints/step_XXXXXXXX`` holding the DCP shards of
the model and optimizer state (each rank writes its own shards, so a sharded table never passes
through one process) plus ``trainer_state.pt`` (epoch, step, RNG states, best metric) and
``config.json``. Ranks write into ``.step_XXXXXXXX.tmp``; after a barrier rank 0 renames it, so
a checkpoint directory either is complete or does not exist. ``checkpoints/best`` holds the model
state (no optimizer) of the best valid evaluation so far, with ``best.json`` (metric, value,
epoch, step), written the same way. DCP reshards on load: a checkpoint
written by 2 ranks loads into 1 rank or into a plain unsharded module.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp

TRAINER_STATE = "trainer_state.pt"
CONFIG_FILE = "config.json"
PREFIX = "step_"


@dataclass
class TrainerState:
    epoch: int = 0
    step_in_epoch: int = 0  # batches of `epoch` already trained
    global_step: int = 0
    best_valid_auc: float = float("-nan")
    history: list[dict[str, Any]] = field(default_factory=list)
    rng: dict[str, Any] = field(default_factory=dict)
    #: ``pipelines.train.selection.Selection`` fields (best valid value, its step, patience count)
    selection: dict[str, Any] = field(default_factory=dict)


def capture_rng() -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def restore_rng(state: dict[str, Any]) -> None:
    if state:
        torch.set_rng_state(state["torch"])
        np.random.set_state(state["numpy"])
        random.setstate(state["python"])


def checkpoint_root(output_dir: str | Path) -> Path:
    return Path(output_dir) / "checkpoints"


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    root = checkpoint_root(output_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX)]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX) :]))


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    found = list_checkpoints(output_dir)
    return found[-1] if found else None


BEST = "best"
BEST_INFO = "best.json"


def _write_atomically(final: Path, rank: int, write: Any) -> None:
    """``write(tmp)`` on every rank into ``.NAME.tmp`` beside ``final``; rank 0 renames it."""
    tmp = final.parent / f".{final.name}.tmp"
    if rank == 0:
        final.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    _barrier()
    write(tmp)
    _barrier()
    if rank == 0:
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    _barrier()


def save_best(
    output_dir: str | Path,
    state: TrainerState,
    model: torch.nn.Module,
    config: dict[str, Any],
    info: dict[str, Any],
    rank: int = 0,
) -> Path:
    """Write the model state (no optimizer) as ``checkpoints/best`` on every rank (collective).

    ``info`` (metric, value, epoch, step) goes to ``best.json``; ``trainer_state.pt`` and
    ``config.json`` make the directory loadable by ``pipelines.serve.plain_model`` (export), not
    resumable (no optimizer state).
    """
    final = checkpoint_root(output_dir) / BEST

    def write(tmp: Path) -> None:
        dcp.save({"model": model.state_dict()}, checkpoint_id=str(tmp))
        if rank == 0:
            torch.save({**state.__dict__, "rng": {}}, tmp / TRAINER_STATE)
            (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True))
            (tmp / BEST_INFO).write_text(json.dumps(info, indent=2, sort_keys=True))

    _write_atomically(final, rank, write)
    return final


def best_checkpoint(output_dir: str | Path) -> Path | None:
    path = checkpoint_root(output_dir) / BEST
    return path if (path / BEST_INFO).is_file() else None


def load_model_state(path: str | Path, model: torch.nn.Module) -> dict[str, Any]:
    """Load the model state of ``checkpoints/best`` (or any checkpoint) in place; returns its
    ``best.json`` (empty for a step checkpoint)."""
    path = Path(path)
    payload: dict[str, Any] = {"model": model.state_dict()}
    dcp.load(payload, checkpoint_id=str(path))
    model.load_state_dict(payload["model"])
    info = path / BEST_INFO
    return json.loads(info.read_text()) if info.is_file() else {}


def save_checkpoint(
    output_dir: str | Path,
    state: TrainerState,
    model: torch.nn.Module,
    optimizer: Any,
    config: dict[str, Any],
    keep: int = 2,
    rank: int = 0,
) -> Path:
    """Write a checkpoint for ``state.global_step`` on every rank (collective)."""
    final = checkpoint_root(output_dir) / f"{PREFIX}{state.global_step:08d}"

    def write(tmp: Path) -> None:
        payload = {"model": model.state_dict(), "optim": optimizer.state_dict()}
        dcp.save(payload, checkpoint_id=str(tmp))
        if rank == 0:
            state.rng = capture_rng()
            torch.save(state.__dict__, tmp / TRAINER_STATE)
            (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True))

    _write_atomically(final, rank, write)
    if rank == 0:
        for old in list_checkpoints(output_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    _barrier()
    return final


def load_checkpoint(
    path: str | Path, model: torch.nn.Module, optimizer: Any | None
) -> TrainerState:
    """Load model (and optimizer) state in place; returns the trainer state."""
    path = Path(path)
    if not (path / TRAINER_STATE).is_file():
        raise FileNotFoundError(f"{path}: not a complete checkpoint ({TRAINER_STATE} missing)")
    payload: dict[str, Any] = {"model": model.state_dict()}
    if optimizer is not None:
        payload["optim"] = optimizer.state_dict()
    dcp.load(payload, checkpoint_id=str(path))
    model.load_state_dict(payload["model"])
    if optimizer is not None:
        optimizer.load_state_dict(payload["optim"])
    raw = torch.load(path / TRAINER_STATE, weights_only=False)
    return TrainerState(**raw)


def read_config(path: str | Path) -> dict[str, Any]:
    return json.loads((Path(path) / CONFIG_FILE).read_text())


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()
