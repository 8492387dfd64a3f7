"""The quality benchmark's run plan: every (variant, learning rate, seed) with its resolved config,
the runs of the second stage (each model's chosen rate only) and the settings a results file records.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import REPO_ROOT
from benchmarks.quality.data import DatasetSpec
from benchmarks.quality.report import summarize
from benchmarks.quality.variants import (
    VARIANTS,
    Variant,
    config_hash,
    config_overrides,
    recipe_path,
)

LR_KEY = "optim.dense_lr"

#: settings compared across the planned configs ("identical for every model" in the report)
SHARED_KEYS = (
    ("model", "embedding_dim"),
    ("model", "behavior_dim"),
    ("model", "over_arch"),
    ("model", "use_user_embedding"),
    ("model", "numeric_summary"),
    ("loader", "batch_size"),
    ("loader", "max_len"),
    ("optim", "sparse"),
    ("optim", "sparse_lr"),
    ("optim", "dense"),
    ("optim", "weight_decay"),
    ("train", "epochs"),
    ("train", "eval_batch_size"),
    ("model", "encoder_config"),
    ("model", "group_key"),
)


@dataclass
class PlannedRun:
    """One training run: the variant at one learning rate and seed."""

    variant: Variant
    lr: float
    seed: int
    config: Path
    overrides: list[str]
    hash: str
    output_dir: Path
    resolved: dict[str, Any]

    @property
    def key(self) -> str:
        return f"lr{self.lr:g}_s{self.seed}"


def display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def plan_runs(
    spec: DatasetSpec,
    root: Path,
    models: list[str],
    lrs: list[float],
    seeds: list[int],
    extra: list[str],
    runs_dir: Path,
    groups: Path | None,
    content: Path | None,
    raw_content: Path | None = None,
) -> list[PlannedRun]:
    """Every (variant, lr, seed), its config loaded and validated before anything trains."""
    from pipelines.train.config import load_config, to_dict

    tokens = {str(root): f"<{spec.name}>"}
    plan = []
    for name in models:
        variant = VARIANTS[name]
        config = recipe_path(spec.recipe_prefix, variant)
        for lr in lrs:
            for seed in seeds:
                out = runs_dir / spec.name / name / f"lr{lr:g}_s{seed}"
                overrides = [
                    *config_overrides(variant, root, groups, content, raw_content),
                    *extra,
                    f"{LR_KEY}={lr}",
                    f"train.seed={seed}",
                    f"loader.seed={seed}",
                    f"train.output_dir={out}",
                ]
                loaded = load_config(config, overrides)
                digest = config_hash(loaded, tokens)
                run = PlannedRun(variant, lr, seed, config, overrides, digest, out, to_dict(loaded))
                plan.append(run)
    return plan


def shared_settings(plan: list[PlannedRun]) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """``(identical for every planned run, differing -> distinct values)`` over SHARED_KEYS."""
    shared: dict[str, Any] = {}
    differs: dict[str, list[Any]] = {}
    for section, key in SHARED_KEYS:
        values: list[Any] = []
        for run in plan:
            value = run.resolved[section][key]
            if value not in values:
                values.append(value)
        if len(values) == 1:
            shared[f"{section}.{key}"] = values[0]
        elif values:
            differs[f"{section}.{key}"] = values
    return shared, differs


def _ordered_union(first: list[Any], second: list[Any]) -> list[Any]:
    return first + [v for v in second if v not in first]


def merge_settings(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The settings of a results file after one more invocation: ``new``, widened by ``old``.

    A results file accumulates runs over invocations (e.g. seed 0 of every model first, more
    seeds of some models later), so what it records is the union: models (benchmark order),
    seeds and learning rates, and for each compared key every value any invocation planned
    (a key one invocation planned with another value moves from ``shared`` to ``differs``).
    """
    if old.get("mode") != new.get("mode"):
        old = {}  # a smoke file is never merged with a full one (nor a new file with anything)
    merged = dict(new)
    models = _ordered_union(list(old.get("models", [])), list(new.get("models", [])))
    known = [m for m in VARIANTS if m in models]
    merged["models"] = known + [m for m in models if m not in known]
    merged["seeds"] = sorted(set(old.get("seeds", [])) | set(new.get("seeds", [])))
    merged["lrs"] = sorted(set(old.get("lrs", [])) | set(new.get("lrs", [])))
    values: dict[str, list[Any]] = {}
    for settings in (old, new):
        for key, value in (settings.get("shared") or {}).items():
            values[key] = _ordered_union(values.get(key, []), [value])
        for key, seen in (settings.get("differs") or {}).items():
            values[key] = _ordered_union(values.get(key, []), list(seen))
    merged["shared"] = {k: v[0] for k, v in values.items() if len(v) == 1}
    merged["differs"] = {k: v for k, v in values.items() if len(v) > 1}
    epochs = {e for s in (old, new) for e in _as_list(s.get("epochs")) if e is not None}
    merged["epochs"] = sorted(epochs)[0] if len(epochs) == 1 else sorted(epochs)
    return merged


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def runs_at_chosen_rates(
    plan: list[PlannedRun], results: dict[str, Any]
) -> tuple[list[PlannedRun], list[str]]:
    """The runs of ``plan`` at their model's chosen learning rate, and the models without one.

    The rate is the one :func:`benchmarks.quality.report.summarize` picks from the recorded
    ``results`` (valid AUC only, compared on the seeds every rate of the model has), so a second
    stage spends its seeds on one rate per model. A model of ``plan`` with no successful
    recorded run has no chosen rate: none of its runs is returned and it is listed.
    """
    chosen = {row["model"]: row["lr"] for row in summarize(results)}
    kept = [run for run in plan if chosen.get(run.variant.name) == run.lr]
    missing = sorted({run.variant.name for run in plan if chosen.get(run.variant.name) is None})
    return kept, missing
