"""The no-model floor: a smoothed user-mean + item-mean label rate.

Every sequence model must beat this to be worth its cost. For each test sample the prediction is
``0.5 * (user_rate + item_rate)`` where each rate is the Bayesian-smoothed mean label of that user
(item) in the splits before the scored one: ``(positives + alpha * global_rate) / (count + alpha)``. Users or
items unseen in training fall back to the global rate.

Usage::

    python -m pipelines.evaluate.floor --dataset data/ml1m [--split test] [--alpha 10]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.console import parse_cli
from pipelines.data.prepared import PreparedDataset
from pipelines.evaluate.metrics import compute_metrics


def smoothed_rate(keys: np.ndarray, labels: np.ndarray, size: int, alpha: float) -> np.ndarray:
    """``[size]`` smoothed positive rate per key index (keys in [0, size))."""
    global_rate = float(labels.mean()) if labels.size else 0.5
    counts = np.bincount(keys, minlength=size).astype(np.float64)
    positives = np.bincount(keys, weights=labels, minlength=size)
    return (positives + alpha * global_rate) / (counts + alpha)


def splits_before(split: str) -> list[str]:
    """The splits a no-model reference is fit on before scoring ``split``: train for valid,
    train + valid for test (never the scored split itself)."""
    return ["train", "valid"] if split == "test" else ["train"]


def floor_predictions(dataset: PreparedDataset, split: str, alpha: float = 10.0) -> dict:
    """Fit on every split before ``split`` (train, + valid for test), predict ``split``."""
    fit = [dataset.read_samples(s).to_pandas() for s in splits_before(split)]
    train = pd.concat(fit, ignore_index=True)
    target = dataset.read_samples(split).to_pandas()
    vocab = dataset.vocab
    train_labels = train["label"].to_numpy(np.float64)
    user_rate = smoothed_rate(train["user"].to_numpy(), train_labels, vocab["users"], alpha)
    item_rate = smoothed_rate(train["item"].to_numpy(), train_labels, vocab["items"], alpha)
    predictions = 0.5 * (
        user_rate[target["user"].to_numpy()] + item_rate[target["item"].to_numpy()]
    )
    labels = target["label"].to_numpy(np.float64)
    metrics = compute_metrics(labels, predictions, user_ids=target["user"].to_numpy())
    return {"predictions": predictions, "labels": labels, "metrics": metrics}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, help="prepared dataset directory")
    parser.add_argument("--split", default="test", choices=["valid", "test"])
    parser.add_argument("--alpha", type=float, default=10.0, help="smoothing pseudo-count")
    parser.add_argument("--out", type=Path, default=None, help="write metrics JSON here")
    args = parse_cli(parser, argv)
    result = floor_predictions(PreparedDataset.open(args.dataset), args.split, args.alpha)
    metrics = {k: float(v) for k, v in result["metrics"].items()}
    print(json.dumps({"model": "floor", "split": args.split, **metrics}, sort_keys=True))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(args.out.suffix + ".tmp")
        tmp.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
        tmp.replace(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
