"""One training on each side: FuxiCTR's (its venv, its trainer) and ours (``pipelines.train``).

Both read the same aligned prepared directory (:func:`benchmarks.peers.convert.derive_aligned`),
FuxiCTR through its LongCTR files. Both are scored by :func:`pipelines.evaluate.metrics.compute_metrics`
on their test predictions (ours inside the trainer, FuxiCTR's here from the saved predictions;
FuxiCTR's own metric values are kept beside them).
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import REPO_ROOT, finite_or_none, read_json, tail
from benchmarks.peers.env import WORKER, peer_python
from benchmarks.quality.data import DatasetSpec
from benchmarks.quality.plan import plan_runs
from benchmarks.quality.run import BENCH_OVERRIDES, train_one
from benchmarks.quality.variants import RECIPES, VARIANTS

#: our model name -> (FuxiCTR LongCTR class, its constructor arguments beyond the shared ones)
PEER_MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "DIN": ("DIN", {}),
    "SIMSoft": ("SIM", {"gsu_type": "soft", "topk": 50, "short_seq_len": 50}),
    "ETA": ("ETA", {"topk": 50, "short_seq_len": 50}),
    "SDIM": ("SDIM", {"short_seq_len": 50}),
    "TWIN": ("TWIN", {"topk": 50, "short_seq_len": 50}),
}
#: our DIN attends over the last 50 of the loaded window (recipe ``encoder_config.max_len``);
#: FuxiCTR's DIN attends over its whole loaded window, so it loads the last 50
DIN_WINDOW = 50


@dataclass(frozen=True)
class Shared:
    """The settings both sides train with."""

    max_len: int
    embedding_dim: int
    batch_size: int
    epochs: int
    hidden_units: tuple[int, ...]
    seed: int
    max_steps: int = 0


def ours_missing(name: str, recipe_prefix: str) -> str | None:
    """Why our side of ``name`` cannot run yet (None when it can)."""
    if name not in VARIANTS:
        return f"{name} is not registered in benchmarks.quality.variants yet"
    recipe = RECIPES / f"{recipe_prefix}_{VARIANTS[name].recipe}.yaml"
    if not recipe.is_file():
        return f"{name}: recipe {recipe.name} does not exist yet"
    return None


def test_truth(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(labels, users)`` of the test split, in file order."""
    import pyarrow.parquet as pq

    table = pq.read_table(root / "samples" / "test.parquet", columns=["label", "user"])
    return table.column("label").to_numpy(), table.column("user").to_numpy()


def _scores(labels: np.ndarray, users: np.ndarray, predictions: np.ndarray) -> dict[str, Any]:
    from pipelines.evaluate.metrics import compute_metrics

    metrics = compute_metrics(labels, predictions, user_ids=users)
    return {k: finite_or_none(metrics.get(k)) for k in ("auc", "gauc", "logloss", "gauc_coverage")}


def train_theirs(
    name: str, lr: float, shared: Shared, root: Path, longctr: Path, out: Path,
    timeout: float | None,
) -> dict[str, Any]:  # fmt: skip
    """Train FuxiCTR's counterpart of ``name`` in the peer venv; the record (status ok / failed)."""
    cls, extra = PEER_MODELS[name]
    work = out / "theirs"
    spec = {
        "model": cls, "lr": lr, "seed": shared.seed, "epochs": shared.epochs,
        "batch_size": shared.batch_size, "embedding_dim": shared.embedding_dim,
        "max_len": DIN_WINDOW if cls == "DIN" else shared.max_len,
        "hidden_units": list(shared.hidden_units), "longctr_dir": str(longctr),
        "work_dir": str(work), "model_params": extra, "max_steps": shared.max_steps,
    }  # fmt: skip
    work.mkdir(parents=True, exist_ok=True)
    (work / "spec.json").write_text(json.dumps(spec, indent=2) + "\n")
    log = work / "worker.log"
    record: dict[str, Any] = {"side": "FuxiCTR", "model": cls, "lr": lr, "spec": spec,
                              "log": str(log)}  # fmt: skip
    start = time.perf_counter()
    try:
        with open(log, "w") as handle:
            done = subprocess.run(
                [str(peer_python()), str(WORKER), str(work / "spec.json")],
                cwd=REPO_ROOT, stdout=handle, stderr=subprocess.STDOUT, timeout=timeout,
            )  # fmt: skip
        code: int | None = done.returncode
    except subprocess.TimeoutExpired:
        code = None
    record["wall_seconds"] = round(time.perf_counter() - start, 2)
    result = read_json(work / "result.json")
    if code != 0 or result is None:
        record.update(status="failed", error=f"exit code {code}", log_tail=tail(log))
        return record
    labels, users = test_truth(root)
    predictions = np.load(work / "test_predictions.npy")
    if predictions.shape != labels.shape:
        record.update(
            status="failed", error=f"{predictions.shape} predictions, {labels.shape} rows"
        )
        return record
    epochs = result["epochs"]
    train_seconds = sum(e["train_seconds"] for e in epochs)
    samples = result["train_samples_per_epoch"] * len(epochs)
    record.update(
        status="ok",
        test=_scores(labels, users, predictions),
        own_test_metrics=result["own_test_metrics"],
        valid_auc=result["best_valid_auc"],
        epochs_run=len(epochs),
        train_seconds_per_epoch=train_seconds / max(len(epochs), 1),
        samples_per_second=samples / train_seconds if train_seconds > 0 else None,
        peak_rss_mib=round(result["peak_rss_mib"], 1),
        parameters=result["parameters"],
        versions={"fuxictr": result["fuxictr_version"], "torch": result["torch_version"]},
    )
    return record


def our_overrides(name: str, shared: Shared) -> list[str]:
    """The overrides that put our recipe on the shared settings."""
    hidden = "[" + ",".join(str(h) for h in shared.hidden_units) + "]"
    overrides = [
        *BENCH_OVERRIDES,
        f"train.epochs={shared.epochs}",
        f"loader.max_len={shared.max_len}",
        f"loader.batch_size={shared.batch_size}",
        f"model.embedding_dim={shared.embedding_dim}",
        f"model.over_arch={hidden}",
        "model.numeric_summary=false",
        "train.patience=2",
        "train.select_metric=auc",
        "train.test_state=best",
    ]
    if shared.max_steps:  # throughput: our default lookup plan (reads only the rows it needs)
        overrides += [
            f"train.max_steps={shared.max_steps}",
            "train.lookup_plan=true",
            f"train.eval_batch_size={shared.batch_size}",
        ]  # 4096 x 10k rows: OOM
    return overrides


def train_ours(
    name: str, lr: float, shared: Shared, root: Path, out: Path, timeout: float | None
) -> dict[str, Any]:
    """Train our ``name`` on the aligned data with the quality benchmark's child process."""
    spec = DatasetSpec(root.name, None, root.name, "ml1m")
    (run,) = plan_runs(spec, root, [name], [lr], [shared.seed], our_overrides(name, shared),
                       out.parent, None, None)  # fmt: skip
    run.output_dir = out / "ours"
    run.overrides = [o for o in run.overrides if not o.startswith("train.output_dir=")]
    run.overrides.append(f"train.output_dir={run.output_dir}")
    record = train_one(run, timeout)
    record.update(side="ours", model=name)
    if record["status"] != "ok":
        return record
    epochs = [r for r in _jsonl(run.output_dir / "metrics.jsonl") if "epoch_seconds" in r]
    train_seconds = sum(r["epoch_seconds"] for r in epochs)
    samples = record["steps"] * shared.batch_size
    summary = read_json(run.output_dir / "metrics.json")
    record.update(  # test: compute_metrics over the trainer's test predictions, as for FuxiCTR
        valid_auc=finite_or_none((summary.get("best") or {}).get("value")),
        epochs_run=len(epochs),
        train_seconds_per_epoch=train_seconds / max(len(epochs), 1),
        samples_per_second=samples / train_seconds if train_seconds > 0 else None,
    )
    return record


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
