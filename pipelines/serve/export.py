"""Export a trained checkpoint as a standalone scoring artifact.

Usage::

    python -m pipelines.export --checkpoint runs/x/checkpoints/step_00001234 --out model.pt2
    python -m pipelines.export --checkpoint runs/x --out model.pt2   # latest checkpoint of a run
    python -m pipelines.export --checkpoint runs/x --split model_dir [--aoti]   # torch + torchrec
    python -m pipelines.export --check-all [--aoti all|none|DMGIN,...] [--report r.json]

The DCP checkpoint written by the trainer (sharded over any number of ranks) is loaded into a
plain, unsharded :class:`~components.model.LifelongCTRModel` (DCP reshards on load; the
checkpoint's ``config.json`` says how to build it and the prepared dataset's manifest gives the
vocabulary sizes; :mod:`pipelines.serve.plain_model`). It is wrapped in
:class:`~pipelines.serve.scorer.TensorScorer`, a function of the plain tensors the
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

The bundled encoders export (their jagged ops keep data-dependent sizes symbolic while torch
traces: ``components/ops/symbolic.py``); the fallback is for user encoders that read sizes as
Python ints. ``--split DIR`` writes the model cut at the embedding boundary instead, sparse
EmbeddingBagCollections plus a dense ``torch.export`` / AOTInductor program, loadable with torch
and torchrec only (:mod:`pipelines.serve.split_export`); ``--check-all`` exports every
registered encoder that way and checks it in a fresh process (:mod:`pipelines.serve.check_all`).

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
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from components.model import LifelongCTRModel, ModelConfig, Vocab
from pipelines.console import parse_cli
from pipelines.data.batch import Batch
from pipelines.data.loader import LoaderConfig, SampleLoader
from pipelines.serve.dense import size_oblivious
from pipelines.serve.plain_model import (
    ExportError,
    LoadedCheckpoint,
    first_error_line,
    load_plain_model,
)
from pipelines.serve.scorer import INPUTS, TensorScorer, batch_tensors

FORMAT = "lifelongrec.scorer"
FORMAT_VERSION = 1
METADATA_FILE = "lifelongrec.json"
_REPO_ROOT = Path(__file__).resolve().parents[2]
_BLAMED_CALL = re.compile(
    r'The following call raised this error:\s*File "(?P<path>[^"]+)", line (?P<line>\d+), '
    r"in \S+\n(?P<code>[^\n]+)"
)


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
        with torch.no_grad(), _quiet_torch(), size_oblivious():
            program = torch.export.export(scorer, example, dynamic_shapes=shapes, strict=False)
    except Exception as err:  # any failure: fall back
        return None, _export_error(err)
    with torch.no_grad():
        for batch in batches:
            inputs = batch_tensors(batch)
            try:
                got = program.module()(*inputs)
            except Exception as err:  # e.g. a guard on the example
                return None, f"exported program fails on another batch: {first_error_line(err)}"
            if not torch.allclose(got, scorer(*inputs), atol=atol, rtol=0):
                return None, "exported program disagrees with the eager model"
    return program, None


def _export_error(err: BaseException) -> str:
    """First line of an export error, plus the user-code line torch blames when it names one."""
    match = _BLAMED_CALL.search(str(err))
    if match is None:
        return first_error_line(err)
    path = Path(match["path"])
    if path.is_relative_to(_REPO_ROOT):
        path = path.relative_to(_REPO_ROOT)
    return f"{first_error_line(err)} at {path}:{match['line']}: {match['code'].strip()}"


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
        raise ExportError(f"{path}: not a lifelongrec model file: {first_error_line(err)}") from err
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
            f"model (exported with other code?): {first_error_line(err)}"
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
    parser.add_argument("--checkpoint", help="checkpoint directory, or a run's output_dir")
    parser.add_argument("--out", help="model file to write (one file, needs torch only)")
    parser.add_argument(
        "--split",
        metavar="DIR",
        help="write the model split at the embedding boundary into DIR instead (sparse.pt, "
        "dense.pt2, load.py: loads with torch + torchrec only; docs/serving.md)",
    )
    parser.add_argument(
        "--aoti",
        nargs="?",
        const="all",
        default=None,
        help="with --split: compile the dense part with AOTInductor; with --check-all: 'all' "
        "(default), 'none' or a comma-separated list of encoders to compile",
    )
    parser.add_argument(
        "--check-all",
        action="store_true",
        help="export every registered encoder (small random models) and check each in a fresh "
        "process without this package against the eager model (no checkpoint needed)",
    )
    parser.add_argument("--report", help="with --check-all: JSON file for the per-encoder results")
    parser.add_argument(
        "--dataset", default=None, help="prepared dataset (default: the config's data.dataset)"
    )
    parser.add_argument(
        "--format",
        choices=("auto", "export", "state_dict"),
        default="auto",
        help="auto: torch.export when the encoder allows it, else the state_dict form",
    )
    args = parse_cli(parser, argv)
    if args.check_all:
        from pipelines.serve.check_all import main_check_all

        return main_check_all(args.aoti or "all", args.report)
    if not args.checkpoint or not (args.out or args.split):
        parser.error("--checkpoint and one of --out / --split are required (or --check-all)")
    if args.split:
        return _main_split(args.checkpoint, args.split, args.dataset, args.aoti is not None)
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


def _main_split(checkpoint: str, out: str, dataset: str | None, aoti: bool) -> int:
    """``--split``: checkpoint -> a split export directory (:mod:`pipelines.serve.split_export`)."""
    from pipelines.serve.split_export import export_split

    try:
        loaded = load_plain_model(checkpoint, dataset)
        extra = {"checkpoint": str(loaded.path.resolve()), "global_step": loaded.state.global_step}
        manifest = export_split(loaded.model, out, aoti=aoti, extra=extra)
    except ExportError as err:
        print(f"export error: {err}", file=sys.stderr)
        return 1
    summary = {"out": out, "kind": manifest["dense"]["kind"], "encoder": manifest["encoder"]}
    print(json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
