"""Export a trained checkpoint as a standalone scoring artifact.

Usage::

    python -m pipelines.export --checkpoint runs/x/checkpoints/step_00001234 --out model.pt2
    python -m pipelines.export --checkpoint runs/x --out model.pt2   # latest checkpoint of a run

The DCP checkpoint written by the trainer (sharded over any number of ranks) is loaded into a
plain, unsharded :class:`~components.model.LifelongCTRModel` (DCP reshards on load; the
checkpoint's ``config.json`` says how to build it and the prepared dataset's manifest gives the
vocabulary sizes). It is wrapped in :class:`TensorScorer`, a function of the plain tensors the
loader produces (no KeyedJaggedTensor, no ``Batch``)::

    scorer(user [B], item [B], category [B], history_lengths [B], history_item [N],
           history_category [N], history_behavior [N], history_age [N],
           history_numeric [N, F]) -> prediction [B] (click probability, float32)

and written to ``--out`` atomically (a temporary sibling, then a rename) in one of two forms:

* ``torch.export`` (``.pt2`` archive, dynamic over B and N): tried first. The exported
  program is checked against the eager model on real batches of other shapes before it is
  accepted.
* ``state_dict`` (``torch.save`` of the unsharded weights, buffers included): the fallback.
  :func:`load_scorer` rebuilds the eager model from the stored config and vocabulary, so the
  file needs no checkpoint, no groups parquet and no process group, but it does need this
  package's code (``components``).

Both carry the same metadata (``lifelongrec.json`` inside the archive / the ``metadata`` entry):
the experiment config, vocabulary sizes, ``max_len``, numeric field names, input layout, the
source checkpoint and, for the fallback, why ``torch.export`` failed.

Why the fallback is what runs today (torch 2.13, checked on the bundled encoders): export
needs data-dependent values to stay symbolic, and the ops the encoders call turn them into
Python ints and branch on them. DIN stops in ``ops/jagged.py`` (``int(lengths.max())`` for the
padded width, then ``bool((lengths > width).any())`` to pick the fbgemm fast path); SIMHard in
``ops/retrieval.py`` (input check ``int(offsets[-1]) != n``, then ``if rows.numel() == 0``);
DMGIN in ``ops/grouping.py`` (the same input check), and its grouping op even makes
``draft_export`` crash (PendingUnbackedSymbolNotFound in ``group_behaviors``). ``draft_export``
is no answer anyway: it specializes such values to the example batch and the program then
fails on any other batch. TorchScript is no way out either: ``torch.jit.script`` stops at the
``Query``/``History`` dataclasses of ``components.encoders.base`` (no source for their generated
``__init__``), and ``torch.jit.trace`` would silently freeze the same data-dependent widths
into constants. Once those ops express them with ``torch._check``/``torch.sym_min`` (and no
Python branch), ``--format auto`` writes a real ``.pt2`` with no change here (the test suite
exports a stand-in encoder that way).

Errors (missing or incomplete checkpoint, a config or dataset that does not match it) print one
line naming the path and exit with code 1; no output file is left behind.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import re
import sys
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributed.checkpoint.api import CheckpointException
from torchrec import EmbeddingBagCollection, KeyedTensor, PoolingType

from components.model import LifelongCTRModel, ModelConfig, Vocab
from pipelines.checkpoint import (
    CONFIG_FILE,
    TRAINER_STATE,
    TrainerState,
    latest_checkpoint,
    load_checkpoint,
    read_config,
)
from pipelines.config import ConfigError, ExperimentConfig, config_from_dict
from pipelines.data.batch import ITEM_KEYS, Batch
from pipelines.data.loader import LoaderConfig, SampleLoader
from pipelines.data.prepared import DataError, PreparedDataset
from pipelines.model_wrapper import TrainWrapper

FORMAT = "lifelongrec.scorer"
FORMAT_VERSION = 1
METADATA_FILE = "lifelongrec.json"
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
#: buffers whose size comes from side data rather than the vocabulary (read from the checkpoint)
_DATA_SIZED_BUFFERS = ("head.item_to_group", "head.encoder.content")
_MODEL_PREFIX = "model.model."  # DCP key prefix: {"model": TrainWrapper.state_dict()}
_REPO_ROOT = Path(__file__).resolve().parents[1]
_BLAMED_CALL = re.compile(
    r'The following call raised this error:\s*File "(?P<path>[^"]+)", line (?P<line>\d+), '
    r"in \S+\n(?P<code>[^\n]+)"
)


class ExportError(RuntimeError):
    """A checkpoint or artifact that cannot be exported/loaded; the message names the path."""


def _lookup(ebc: EmbeddingBagCollection, ids: dict[str, torch.Tensor]) -> KeyedTensor:
    """The EBC's output for bags of exactly one id each, as plain row gathers.

    ``ids`` maps every feature of ``ebc`` to ``[R]`` int64 ids (one id per bag); the result is
    the ``KeyedTensor [R, sum of dims]`` the EBC returns for the equivalent KJT (a SUM bag of
    one row is that row, bit for bit), without building a KeyedJaggedTensor, whose
    per-key splits ``torch.export`` cannot keep symbolic.
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
        rows = {
            "item_id": torch.cat([item, history_item]),  # [B + N]
            "category_id": torch.cat([category, history_category]),
            "behavior_id": torch.cat([torch.zeros_like(item), history_behavior]),
        }
        # key-major ids, the layout of Batch.items.values(): [3 * (B + N)]
        item_ids = torch.cat([rows[key] for key in ITEM_KEYS])
        output = self.model.head(
            _lookup(self.model.user_ebc, {"user_id": user}),
            _lookup(self.model.item_ebc, rows),
            item_ids,
            history_lengths,
            history_age,
            history_numeric,
        )
        return torch.sigmoid(output.logits.float())


def batch_tensors(batch: Batch) -> tuple[torch.Tensor, ...]:
    """The :data:`INPUTS` of :class:`TensorScorer` for a loader ``Batch`` (B samples, N rows)."""
    b = batch.batch_size
    ids = batch.items.values().view(len(ITEM_KEYS), -1)  # [3, B + N]
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


# -- checkpoint -> plain model ------------------------------------------------------------------


def resolve_checkpoint(path: str | os.PathLike[str]) -> Path:
    """``path`` itself if it is a checkpoint directory, else the latest checkpoint of a run."""
    path = Path(path)
    if not path.exists():
        raise ExportError(f"{path}: checkpoint not found")
    if not path.is_dir():
        raise ExportError(f"{path}: not a checkpoint directory")
    if not (path / TRAINER_STATE).exists() and (path / "checkpoints").is_dir():
        latest = latest_checkpoint(path)
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


def build_vocab(dataset: PreparedDataset, item_to_group: torch.Tensor | None) -> Vocab:
    """Vocabulary sizes of a prepared dataset (same rule as the trainer)."""
    v = dataset.vocab
    return Vocab(
        users=v["users"],
        items=v["items"],
        categories=v["categories"],
        behaviors=v["behaviors"],
        num_numeric=len(dataset.numeric_fields),
        groups=int(item_to_group.max()) + 1 if item_to_group is not None else None,
    )


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


# -- export and artifacts -----------------------------------------------------------------------


def example_batches(dataset_dir: str | os.PathLike[str], max_len: int) -> list[Batch]:
    """Real batches of different shapes (B = 16 and 7, other samples): export example + check.

    Taken from the valid split (the test split if valid is empty); empty if both are.
    """
    for split in ("valid", "test"):
        batches: list[Batch] = []
        for size, index in ((16, 0), (7, 1)):
            config = LoaderConfig(batch_size=size, max_len=max_len, shuffle=False)
            loader = SampleLoader(dataset_dir, split, config)
            for i, batch in enumerate(loader):
                if i == min(index, len(loader) - 1):
                    batches.append(batch)
                    break
        if batches:
            return batches
    return []


def try_torch_export(
    scorer: TensorScorer, batches: list[Batch], atol: float = 1e-5
) -> tuple[torch.export.ExportedProgram | None, str | None]:
    """``torch.export`` with B and N dynamic; returns ``(program, None)`` or ``(None, reason)``.

    The program is accepted only if it reproduces the eager scorer on every batch (the first
    is the export example, the others have other shapes).
    """
    if not batches:
        return None, "no samples to export with"
    batch_dim = torch.export.Dim("batch", min=1)
    rows_dim = torch.export.Dim("rows", min=0)
    shapes = tuple({0: batch_dim if shape.startswith("[B") else rows_dim} for _, shape, _ in INPUTS)
    example = batch_tensors(batches[0])
    try:
        with torch.no_grad(), _quiet_torch():
            program = torch.export.export(scorer, example, dynamic_shapes=shapes, strict=False)
    except Exception as err:  # any failure: fall back
        return None, _export_error(err)
    with torch.no_grad():
        for batch in batches:
            inputs = batch_tensors(batch)
            try:
                got = program.module()(*inputs)
            except Exception as err:  # e.g. a guard on the example
                return None, f"exported program fails on another batch: {_first_line(err)}"
            if not torch.allclose(got, scorer(*inputs), atol=atol, rtol=0):
                return None, "exported program disagrees with the eager model"
    return program, None


def _export_error(err: BaseException) -> str:
    """First line of an export error, plus the user-code line torch blames when it names one."""
    match = _BLAMED_CALL.search(str(err))
    if match is None:
        return _first_line(err)
    path = Path(match["path"])
    if path.is_relative_to(_REPO_ROOT):
        path = path.relative_to(_REPO_ROOT)
    return f"{_first_line(err)} at {path}:{match['line']}: {match['code'].strip()}"


@contextlib.contextmanager
def _quiet_torch() -> Iterator[None]:
    """Silence torch's log records, warnings and stderr prints (a failed export prints graphs)."""
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)


def _checkpoint_error(err: BaseException) -> str:
    """The first per-rank cause of a DCP ``CheckpointException`` (else the error itself)."""
    if isinstance(err, CheckpointException) and err.failures:
        failure = next(iter(err.failures.values()))
        err = failure[0] if isinstance(failure, tuple) else failure
    return _first_line(err)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0] if text else ''}"[:500]


def artifact_metadata(loaded: LoadedCheckpoint) -> dict[str, Any]:
    """What scoring needs besides the weights (JSON-serialisable)."""
    config = loaded.config
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "kind": "state_dict",
        "export_error": None,
        "config": asdict(config),
        "vocab": asdict(loaded.vocab),
        "max_len": config.loader.max_len,
        "eval_batch_size": config.train.eval_batch_size,
        "numeric_fields": list(loaded.dataset.numeric_fields),
        "inputs": [{"name": n, "shape": s, "dtype": d} for n, s, d in INPUTS],
        "output": {"name": "prediction", "shape": "[B]", "dtype": "float32"},
        "checkpoint": str(loaded.path.resolve()),
        "global_step": loaded.state.global_step,
        "epoch": loaded.state.epoch,
    }


def write_artifact(
    out: str | os.PathLike[str],
    metadata: dict[str, Any],
    model: LifelongCTRModel,
    program: torch.export.ExportedProgram | None,
) -> Path:
    """Write the artifact atomically (temporary sibling file, then ``os.replace``)."""
    out = Path(out)
    if out.is_dir():
        raise ExportError(f"{out}: is a directory (--out names the model file)")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        text = json.dumps(metadata, sort_keys=True)
        if program is not None:
            torch.export.save(program, str(tmp), extra_files={METADATA_FILE: text})
        else:
            state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            torch.save({"metadata": text, "state_dict": state}, tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def load_scorer(
    path: str | os.PathLike[str],
) -> tuple[Callable[..., torch.Tensor], dict[str, Any]]:
    """Load an artifact written by this module: ``(scorer, metadata)``.

    ``scorer(*batch_tensors(batch)) -> prediction [B]``; for the ``state_dict`` form it is the
    eager :class:`TensorScorer` rebuilt from the stored config and vocabulary.
    """
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"{path}: model file not found")
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except zipfile.BadZipFile as err:
        raise ExportError(f"{path}: not a lifelongrec model file (not a zip archive)") from err
    if any(name.endswith(f"extra/{METADATA_FILE}") for name in names):
        extra = {METADATA_FILE: ""}
        program = torch.export.load(str(path), extra_files=extra)
        return program.module(), _check_metadata(path, extra[METADATA_FILE])
    try:
        payload = torch.load(path, weights_only=True, map_location="cpu")
        text, state_dict = payload["metadata"], payload["state_dict"]
    except Exception as err:  # any unreadable payload is the same user error
        raise ExportError(f"{path}: not a lifelongrec model file: {_first_line(err)}") from err
    metadata = _check_metadata(path, text)
    try:
        model = LifelongCTRModel(
            ModelConfig(**metadata["config"]["model"]),
            Vocab(**metadata["vocab"]),
            item_to_group=_non_empty(state_dict.get("head.item_to_group")),
            content_embeddings=_non_empty(state_dict.get("head.encoder.content")),
        )
        model.load_state_dict(state_dict)
    except (RuntimeError, ValueError, TypeError) as err:
        raise ExportError(
            f"{path}: weights do not fit this code's {metadata['config']['model']['encoder']} "
            f"model (exported with other code?): {_first_line(err)}"
        ) from err
    return TensorScorer(model).eval(), metadata


def _non_empty(tensor: torch.Tensor | None) -> torch.Tensor | None:
    return tensor if tensor is not None and tensor.numel() else None


def _check_metadata(path: Path, text: str) -> dict[str, Any]:
    metadata = json.loads(text)
    if metadata.get("format") != FORMAT or metadata.get("version") != FORMAT_VERSION:
        raise ExportError(
            f"{path}: unsupported model file format {metadata.get('format')!r} "
            f"v{metadata.get('version')}"
        )
    return metadata


def export(
    checkpoint: str | os.PathLike[str],
    out: str | os.PathLike[str],
    dataset_dir: str | None = None,
    mode: str = "auto",
) -> dict[str, Any]:
    """Checkpoint -> artifact at ``out``; returns the metadata written.

    ``mode``: ``auto`` (torch.export, else the state_dict form), ``export`` (fail unless
    torch.export works) or ``state_dict`` (do not try torch.export).
    """
    if Path(out).is_dir():
        raise ExportError(f"{out}: is a directory (--out names the model file)")
    loaded = load_plain_model(checkpoint, dataset_dir)
    metadata = artifact_metadata(loaded)
    program = None
    if mode in ("auto", "export"):
        program, reason = try_torch_export(
            TensorScorer(loaded.model).eval(),
            example_batches(loaded.dataset.root, loaded.config.loader.max_len),
        )
        if program is None:
            if mode == "export":
                raise ExportError(f"{loaded.path}: torch.export failed: {reason}")
            metadata["export_error"] = reason
        else:
            metadata["kind"] = "torch.export"
    write_artifact(out, metadata, loaded.model, program)
    return metadata


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--checkpoint", required=True, help="checkpoint directory, or a run's output_dir"
    )
    parser.add_argument("--out", required=True, help="model file to write")
    parser.add_argument(
        "--dataset", default=None, help="prepared dataset (default: the config's data.dataset)"
    )
    parser.add_argument(
        "--format",
        choices=("auto", "export", "state_dict"),
        default="auto",
        help="auto: torch.export when the encoder allows it, else the state_dict form",
    )
    args = parser.parse_args(argv)
    try:
        metadata = export(args.checkpoint, args.out, args.dataset, args.format)
    except ExportError as err:
        print(f"export error: {err}", file=sys.stderr)
        return 1
    summary = {
        "out": str(args.out),
        "kind": metadata["kind"],
        "encoder": metadata["config"]["model"]["encoder"],
        "checkpoint": metadata["checkpoint"],
        "export_error": metadata["export_error"],
    }
    print(json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
