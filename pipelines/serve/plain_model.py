"""Load a trainer checkpoint (DCP, sharded over any number of ranks) into a plain, unsharded
:class:`~components.model.LifelongCTRModel`, without a process group.

The checkpoint's ``config.json`` says how to build the model and the prepared dataset's manifest
gives the vocabulary sizes; tables sized by side data (``item_to_group``, CiUBM's content) are
read from the checkpoint itself. Every failure is an :class:`ExportError` naming the path.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.distributed.checkpoint.api import CheckpointException

from components.model import LifelongCTRModel, Vocab
from pipelines.data.prepared import DataError, PreparedDataset
from pipelines.train.checkpoint import (
    CONFIG_FILE,
    TRAINER_STATE,
    TrainerState,
    best_checkpoint,
    latest_checkpoint,
    load_checkpoint,
    read_config,
)
from pipelines.train.config import ConfigError, ExperimentConfig, config_from_dict
from pipelines.train.model_setup import build_vocab
from pipelines.train.model_wrapper import TrainWrapper

#: buffers whose size comes from side data rather than the vocabulary (read from the checkpoint)
_DATA_SIZED_BUFFERS = ("head.item_to_group", "head.encoder.content")
_MODEL_PREFIX = "model.model."  # DCP key prefix: {"model": TrainWrapper.state_dict()}


class ExportError(RuntimeError):
    """A checkpoint or artifact that cannot be exported/loaded; the message names the path."""


def resolve_checkpoint(path: str | os.PathLike[str]) -> Path:
    """``path`` itself if it is a checkpoint directory, else a run's best state
    (``checkpoints/best``, the valid-selected model the trainer scored test with) or, without
    one, its latest checkpoint."""
    path = Path(path)
    if not path.exists():
        raise ExportError(f"{path}: checkpoint not found")
    if not path.is_dir():
        raise ExportError(f"{path}: not a checkpoint directory")
    if not (path / TRAINER_STATE).exists() and (path / "checkpoints").is_dir():
        latest = best_checkpoint(path) or latest_checkpoint(path)
        if latest is None:
            raise ExportError(f"{path}: run directory without any checkpoint")
        path = latest
    missing = [
        name for name in (TRAINER_STATE, CONFIG_FILE, ".metadata") if not (path / name).is_file()
    ]
    if missing:
        raise ExportError(f"{path}: not a complete checkpoint ({', '.join(missing)} missing)")
    return path


def _saved_sizes(path: Path) -> dict[str, torch.Size]:
    """Tensor sizes stored in a DCP checkpoint's model state, by plain-model key."""
    import torch.distributed.checkpoint as dcp

    try:
        metadata = dcp.FileSystemReader(str(path)).read_metadata()
    except Exception as err:  # any unreadable metadata
        raise ExportError(f"{path}: unreadable checkpoint metadata: {err}") from err
    return {
        key[len(_MODEL_PREFIX) :]: entry.size
        for key, entry in metadata.state_dict_metadata.items()
        if key.startswith(_MODEL_PREFIX) and hasattr(entry, "size")
    }


def _read_saved(path: Path, sizes: dict[str, torch.Size], key: str) -> torch.Tensor | None:
    """One tensor of the checkpoint's model (resharded to a plain tensor), None when empty."""
    import torch.distributed.checkpoint as dcp

    size = sizes.get(key)
    if size is None or size.numel() == 0:
        return None
    dtype = torch.int64 if key.endswith("item_to_group") else torch.float32
    tensor = torch.zeros(size, dtype=dtype)
    with _single_process_dcp():
        dcp.load({"model": {f"model.{key}": tensor}}, checkpoint_id=str(path))
    return tensor


@contextlib.contextmanager
def _single_process_dcp() -> Iterator[None]:
    """DCP warns that it loads in one process when no process group exists: that is the point."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        yield


@dataclass
class LoadedCheckpoint:
    """A trainer checkpoint loaded into an unsharded model (eval mode)."""

    model: LifelongCTRModel
    config: ExperimentConfig
    dataset: PreparedDataset
    vocab: Vocab
    state: TrainerState
    path: Path


def load_plain_model(
    checkpoint: str | os.PathLike[str], dataset_dir: str | None = None
) -> LoadedCheckpoint:
    """Load a trainer checkpoint (written by any number of ranks) into an unsharded model.

    ``dataset_dir`` overrides the config's ``data.dataset`` (only its manifest is read, for the
    vocabulary). ``item_to_group`` and content tables come from the checkpoint itself, so the
    groups parquet and content .npy the run was trained with are not needed.
    """
    path = resolve_checkpoint(checkpoint)
    try:
        config = config_from_dict(read_config(path), str(path / CONFIG_FILE))
    except (ConfigError, json.JSONDecodeError) as err:
        raise ExportError(f"{path / CONFIG_FILE}: invalid trainer config: {err}") from err
    root = dataset_dir or config.data.dataset
    try:
        dataset = PreparedDataset.open(root)
    except DataError as err:
        raise ExportError(f"{err} (dataset of checkpoint {path}; see --dataset)") from err
    sizes = _saved_sizes(path)
    item_to_group = _read_saved(path, sizes, _DATA_SIZED_BUFFERS[0])
    content = _read_saved(path, sizes, _DATA_SIZED_BUFFERS[1])
    vocab = build_vocab(dataset, item_to_group)
    try:
        model = LifelongCTRModel(
            config.model, vocab, item_to_group=item_to_group, content_embeddings=content
        )
        with _single_process_dcp():
            state = load_checkpoint(path, TrainWrapper(model), None)
    except (CheckpointException, RuntimeError, ValueError, KeyError) as err:
        raise ExportError(
            f"{path}: does not load into a {config.model.encoder} model for dataset {root} "
            f"with this code: {_checkpoint_error(err)}"
        ) from err
    return LoadedCheckpoint(model.eval(), config, dataset, vocab, state, path)


def _checkpoint_error(err: BaseException) -> str:
    """The first per-rank cause of a DCP ``CheckpointException`` (else the error itself)."""
    if isinstance(err, CheckpointException) and err.failures:
        failure = next(iter(err.failures.values()))
        err = failure[0] if isinstance(failure, tuple) else failure
    return first_error_line(err)


def first_error_line(err: BaseException) -> str:
    """``"Type: first line of the message"``, at most 500 characters."""
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0] if text else ''}"[:500]
