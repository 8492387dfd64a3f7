"""Load what the ranking service serves: :func:`load_serving_model`.

Accepts what ``pipelines.score`` and ``pipelines.export`` accept today: a trainer run or
checkpoint directory (``pipelines.serve.plain_model.load_plain_model``) or a ``state_dict``
model file written by ``python -m pipelines.export`` (``pipelines.serve.export.load_scorer``).
A ``torch.export`` program holds no eager model to take the per-user state from, so it is
refused with a message; a standalone artifact plugs in here once it exposes the user-state and
candidate-scoring halves.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

from components.model import LifelongCTRModel, ModelConfig, Vocab
from pipelines.serve.export import (
    FORMAT,
    FORMAT_VERSION,
    artifact_metadata,
    load_scorer,
    write_artifact,
)
from pipelines.serve.plain_model import ExportError, load_plain_model
from pipelines.serve.scorer import TensorScorer
from pipelines.serve.state.user_state import ServingModel


def load_serving_model(path: str | os.PathLike[str]) -> ServingModel:
    """A :class:`ServingModel` from a run / checkpoint directory or a ``state_dict`` model file;
    raises :class:`ExportError` naming the path."""
    path = Path(path)
    if path.is_dir():
        loaded = load_plain_model(path)
        return ServingModel(loaded.model, artifact_metadata(loaded))
    scorer, metadata = load_scorer(path)
    if not isinstance(scorer, TensorScorer):
        raise ExportError(
            f"{path}: a torch.export program cannot serve cached user states; serve the run "
            "directory or a file written with `python -m pipelines.export --format state_dict`"
        )
    return ServingModel(scorer.model, metadata)


def save_model_file(
    model: LifelongCTRModel, config: ModelConfig, vocab: Vocab, path: str | os.PathLike[str]
) -> Path:
    """Write ``model`` as a ``state_dict`` model file :func:`load_serving_model` reads (the
    form ``pipelines.export`` falls back to), e.g. an untrained model for load tests."""
    metadata = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "kind": "state_dict",
        "export_error": "written by pipelines.serve.model_loader.save_model_file",
        "config": {"model": asdict(config)},
        "vocab": asdict(vocab),
        "max_len": None,
        "numeric_fields": [f"numeric_{i}" for i in range(vocab.num_numeric)],
    }
    return write_artifact(path, metadata, model, None)
