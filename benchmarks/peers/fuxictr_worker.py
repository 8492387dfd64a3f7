"""One FuxiCTR LongCTR training, run by the peer venv's interpreter (``.peers/venv/bin/python``).

Not imported by the project: it imports only FuxiCTR, its model zoo and their dependencies, and
follows the protocol of LongCTR's own ``run_expid.py`` with the config passed as a JSON spec:
``FeatureProcessor`` + ``build_dataset(rebuild_dataset=False)`` (the converted parquet files are
used as they are, vocabularies from the spec), ``FeatureMap.load``, the model class from
``model_zoo.LongCTR``, ``RankDataLoader`` with ``LongCTRDataLoader``, then the model's own
``fit`` (best valid AUC kept, as ``run_expid`` does) and ``predict`` on the test split.

Timing wraps the model's own ``train_epoch`` and ``eval_step`` (the validation pass ``fit`` runs
at every epoch end): train seconds per epoch are the epoch's wall time minus its validation.

Usage::

    .peers/venv/bin/python benchmarks/peers/fuxictr_worker.py SPEC.json

SPEC.json keys: model, lr, seed, epochs, batch_size, embedding_dim, max_len, hidden_units,
longctr_dir (``benchmarks.peers.convert.to_longctr`` output), work_dir, model_params (extra
constructor arguments), max_steps (0 = whole epochs; smoke runs). Writes ``result.json`` and
``test_predictions.npy`` into work_dir.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import resource
import sys
import time
from pathlib import Path


def _peak_rss_mib() -> float:
    """VmHWM (this process's own peak; ru_maxrss would inherit the parent's across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _feature_cols(vocab: dict) -> list[dict]:
    def meta(name: str) -> dict:
        return {"name": name, "active": True, "dtype": "int", "type": "meta", "remap": False}

    def categorical(name: str, source: str, size: int) -> dict:
        return {
            "name": name, "active": True, "dtype": "int", "type": "categorical",
            "source": source, "remap": False, "vocab_size": size,
        }  # fmt: skip

    # vocab sizes + 1: FuxiCTR's tokenizer appends an out-of-vocabulary row
    return [
        meta("user_index"),
        meta("item_index"),
        meta("seq_len"),
        categorical("user_id", "user", vocab["users"] + 1),
        categorical("item_id", "item", vocab["items"] + 1),
        categorical("cate_id", "item", vocab["categories"] + 1),
    ]


def main(spec_path: str) -> int:
    import numpy as np
    from fuxictr.features import FeatureMap
    from fuxictr.metrics import evaluate_metrics
    from fuxictr.preprocess import FeatureProcessor, build_dataset
    from fuxictr.pytorch.dataloaders import RankDataLoader
    from fuxictr.pytorch.torch_utils import seed_everything

    spec = json.loads(Path(spec_path).read_text())
    data = Path(spec["longctr_dir"])
    work = Path(spec["work_dir"])
    work.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    facts = json.loads((data / "longctr.json").read_text())
    params = {
        "dataset_id": "peers",
        "data_root": str(work / "fuxictr_data"),
        "model_root": str(work / "checkpoints"),
        "data_format": "parquet",
        "train_data": str(data / "train.parquet"),
        "valid_data": str(data / "valid.parquet"),
        "test_data": str(data / "test.parquet"),
        "user_info": str(data / "user_info.parquet"),
        "item_info": str(data / "item_info.parquet"),
        "rebuild_dataset": False,
        "feature_cols": _feature_cols(facts["vocab"]),
        "label_col": {"name": "label", "dtype": "float"},
        "group_id": "user_index",
        "model": spec["model"],
        "model_id": spec["model"],
        "task": "binary_classification",
        "loss": "binary_crossentropy",
        "metrics": ["logloss", "AUC", "gAUC"],
        "optimizer": "adam",
        "learning_rate": spec["lr"],
        "embedding_dim": spec["embedding_dim"],
        "dnn_hidden_units": spec["hidden_units"],
        "batch_size": spec["batch_size"],
        "epochs": spec["epochs"],
        "max_len": spec["max_len"],
        "shuffle": True,
        "seed": spec["seed"],
        "monitor": "AUC",
        "monitor_mode": "max",
        "save_best_only": True,
        "early_stop_patience": 2,
        "reduce_lr_on_plateau": False,
        "num_workers": 0,
        "verbose": 0,
        "gpu": -1,
        **spec.get("model_params", {}),
    }
    Path(params["model_root"], params["dataset_id"]).mkdir(parents=True, exist_ok=True)
    seed_everything(seed=params["seed"])
    encoder = FeatureProcessor(**params)
    params["train_data"], params["valid_data"], params["test_data"] = build_dataset(
        encoder, **params
    )
    feature_map = FeatureMap(params["dataset_id"], encoder.data_dir)
    feature_map.load(os.path.join(encoder.data_dir, "feature_map.json"), params)
    zoo = importlib.import_module("model_zoo.LongCTR")
    from model_zoo.LongCTR.longctr_dataloader import LongCTRDataLoader

    model = getattr(zoo, spec["model"])(feature_map, **params)
    params["data_loader"] = LongCTRDataLoader
    train_gen, valid_gen = RankDataLoader(feature_map, stage="train", **params)

    epochs: list[dict] = []
    eval_seconds = [0.0]
    train_epoch, eval_step = model.train_epoch, model.eval_step
    max_steps = int(spec.get("max_steps") or 0)

    valid_logs: list[dict] = []
    evaluate = model.evaluate

    def recording_evaluate(generator, metrics=None):  # noqa: ANN001, ANN202
        logs = evaluate(generator, metrics=metrics)
        valid_logs.append({k: float(v) for k, v in logs.items()})
        return logs

    def timed_eval() -> None:
        start = time.perf_counter()
        eval_step()
        eval_seconds[0] += time.perf_counter() - start

    def timed_epoch(generator) -> None:  # noqa: ANN001 (FuxiCTR's loader)
        eval_seconds[0] = 0.0
        start = time.perf_counter()
        if max_steps:
            model._eval_steps = min(max_steps, len(generator))  # validate after the last step
            generator = _first_batches(generator, max_steps)
        train_epoch(generator)
        wall = time.perf_counter() - start
        epochs.append({"wall_seconds": wall, "valid_seconds": eval_seconds[0],
                       "train_seconds": wall - eval_seconds[0]})  # fmt: skip

    model.eval_step, model.train_epoch = timed_eval, timed_epoch
    model.evaluate = recording_evaluate
    model.fit(train_gen, validation_data=valid_gen, **params)
    model.evaluate = evaluate
    test_gen = RankDataLoader(feature_map, stage="test", **params)
    start = time.perf_counter()
    predictions = model.predict(test_gen)
    test_seconds = time.perf_counter() - start
    import pandas as pd

    test = pd.read_parquet(params["test_data"], columns=["label", "user_index"])
    own = evaluate_metrics(
        test["label"].to_numpy(np.float64), predictions, ["logloss", "AUC", "gAUC"],
        test["user_index"].to_numpy(),
    )  # fmt: skip
    np.save(work / "test_predictions.npy", predictions.astype(np.float64))
    samples = (
        train_gen.num_samples
        if not max_steps
        else min(train_gen.num_samples, max_steps * params["batch_size"])
    )
    result = {
        "model": spec["model"],
        "epochs": epochs,
        "valid": valid_logs,
        "best_valid_auc": max((v["AUC"] for v in valid_logs if "AUC" in v), default=None),
        "train_samples_per_epoch": samples,
        "test_seconds": test_seconds,
        "own_test_metrics": {k: float(v) for k, v in own.items()},
        "peak_rss_mib": _peak_rss_mib(),
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "fuxictr_version": importlib.import_module("fuxictr.version").__version__,
        "torch_version": importlib.import_module("torch").__version__,
    }
    (work / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


def _first_batches(generator, count: int):  # noqa: ANN001, ANN202
    for index, batch in enumerate(generator):
        if index >= count:
            return
        yield batch


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
