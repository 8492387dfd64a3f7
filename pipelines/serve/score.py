"""Score a split of a prepared dataset with an exported model (``python -m pipelines.export``).

Usage::

    python -m pipelines.score --model model.pt2 --dataset data/ml1m --split test \\
        --out predictions.parquet

Streams ``samples/{split}.parquet`` with :class:`~pipelines.data.loader.SampleLoader` (histories
truncated to the ``max_len`` the model was trained with, read from the model file), writes
``user, item, ts, label, prediction`` (one row per sample, in file order) atomically to ``--out``
and prints ``{"split": ..., "auc": ..., "gauc": ..., "logloss": ..., ...}`` as one JSON line.
The predictions equal the trainer's (``predictions_{split}.parquet`` with
``train.save_predictions=true``) up to float rounding from different batch compositions.

Errors (missing or foreign model file, a dataset whose vocabulary differs from the model's)
print one line naming the path and exit with code 1; no output file is left behind.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from pipelines.console import parse_cli
from pipelines.data.loader import LoaderConfig, SampleLoader
from pipelines.data.prepared import DataError, PreparedDataset
from pipelines.evaluate.metrics import compute_metrics
from pipelines.serve.export import load_scorer
from pipelines.serve.plain_model import ExportError
from pipelines.serve.scorer import batch_tensors
from pipelines.train.model_setup import build_vocab

#: vocabulary fields that must agree between the model and the dataset it scores
_VOCAB_FIELDS = ("users", "items", "categories", "behaviors", "num_numeric")


def check_dataset(dataset: PreparedDataset, metadata: dict[str, Any]) -> None:
    """Raise ``DataError`` if ``dataset``'s ids do not index the model's tables."""
    have = asdict(build_vocab(dataset, None))
    want = metadata["vocab"]
    wrong = [f"{k} {have[k]} != {want[k]}" for k in _VOCAB_FIELDS if have[k] != want[k]]
    if wrong:
        raise DataError(
            dataset.root / "manifest.json",
            None,
            f"vocabulary differs from the model's ({', '.join(wrong)})",
        )


@torch.no_grad()
def score(
    model_path: str | os.PathLike[str],
    dataset_dir: str | os.PathLike[str],
    split: str,
    batch_size: int | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Predictions of every sample of ``split``: ``(frame, metadata)``.

    ``frame`` has columns ``user, item, ts`` (int64), ``label`` (float32), ``prediction``
    (float64 click probability), one row per sample in the split file's order.
    """
    scorer, metadata = load_scorer(model_path)
    dataset = PreparedDataset.open(dataset_dir)
    check_dataset(dataset, metadata)
    config = LoaderConfig(
        batch_size=batch_size or int(metadata["eval_batch_size"]),
        max_len=int(metadata["max_len"]),
        shuffle=False,
        drop_last=False,
    )
    parts: dict[str, list[np.ndarray]] = {
        k: [] for k in ("user", "item", "ts", "label", "prediction")
    }
    for batch in SampleLoader(dataset_dir, split, config):
        keep = (batch.weights > 0).numpy()  # the last batch is padded with weight-0 rows
        inputs = batch_tensors(batch)
        predictions = scorer(*inputs)
        parts["user"].append(inputs[0].numpy()[keep])
        parts["item"].append(inputs[1].numpy()[keep])
        parts["ts"].append(batch.timestamps.numpy()[keep])
        parts["label"].append(batch.labels.numpy()[keep])
        parts["prediction"].append(predictions.float().numpy()[keep])
    merged = {k: np.concatenate(v) if v else np.zeros(0) for k, v in parts.items()}
    frame = pd.DataFrame(
        {
            "user": merged["user"].astype(np.int64),
            "item": merged["item"].astype(np.int64),
            "ts": merged["ts"].astype(np.int64),
            "label": merged["label"].astype(np.float32),
            "prediction": merged["prediction"].astype(np.float64),
        }
    )
    return frame, metadata


def write_parquet_atomically(frame: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """``frame`` to ``path`` through a temporary sibling file and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="model file from pipelines.export")
    parser.add_argument("--dataset", required=True, help="prepared dataset directory")
    parser.add_argument("--split", default="test", choices=("train", "valid", "test"))
    parser.add_argument("--out", required=True, help="predictions parquet to write")
    parser.add_argument(
        "--batch-size", type=int, default=None, help="default: the run's train.eval_batch_size"
    )
    args = parse_cli(parser, argv)
    if args.batch_size is not None and args.batch_size < 1:
        parser.error("--batch-size must be >= 1")
    try:
        frame, metadata = score(args.model, args.dataset, args.split, args.batch_size)
    except (ExportError, DataError) as err:
        print(f"score error: {err}", file=sys.stderr)
        return 1
    if frame.empty:
        print(f"score error: {args.dataset}: split {args.split!r} has no samples", file=sys.stderr)
        return 1
    write_parquet_atomically(frame, args.out)
    metrics = compute_metrics(frame["label"], frame["prediction"], user_ids=frame["user"])
    record = {
        "split": args.split,
        "model": metadata["config"]["model"]["encoder"],
        "kind": metadata["kind"],
        "out": str(args.out),
        **metrics,
    }
    print(json.dumps(record, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
