"""The quality benchmark's second stage: extra seeds only at each model's chosen rate, from a
results dict (no training)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.quality_plan import PlannedRun, runs_at_chosen_rates
from benchmarks.variants import VARIANTS


def _run(name: str, lr: float, seed: int) -> PlannedRun:
    out = Path("runs") / name / f"lr{lr:g}_s{seed}"
    return PlannedRun(VARIANTS[name], lr, seed, Path("recipe.yaml"), [], "hash", out, {})


def _record(lr: float, seed: int, valid: float | None, status: str = "ok") -> dict[str, Any]:
    return {
        "lr": lr, "seed": seed, "status": status,
        "valid": {"auc": valid}, "test": {"auc": 0.8, "gauc": 0.6, "logloss": 0.5},
        "train_seconds": 1.0, "peak_rss_mib": 1.0,
    }  # fmt: skip


def _results(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    return {"runs": {m: {f"lr{r['lr']:g}_s{r['seed']}": r for r in rs} for m, rs in runs.items()}}


def test_only_the_chosen_rate_of_each_model_runs_the_other_seeds() -> None:
    results = _results(
        {
            "DIN": [_record(0.002, 0, 0.78), _record(0.004, 0, 0.79)],  # 0.004 wins
            "SIMSoft": [_record(0.002, 0, 0.80), _record(0.004, 0, 0.79)],  # 0.002 wins
            # seeds 1, 2 of 0.002 exist: the rates are compared on seed 0, the common one
            "DMGIN": [_record(0.002, 0, 0.80), _record(0.002, 1, 0.70), _record(0.002, 2, 0.70)]
            + [_record(0.004, 0, 0.79)],
            "ETA": [_record(0.002, 0, None, "failed"), _record(0.004, 0, None, "failed")],
        }
    )
    plan = [
        _run(name, lr, seed)
        for name in ("DIN", "SIMSoft", "DMGIN", "ETA", "DINFull")
        for lr in (0.002, 0.004)
        for seed in (1, 2)
    ]
    kept, missing = runs_at_chosen_rates(plan, results)
    assert [(r.variant.name, r.lr, r.seed) for r in kept] == [
        ("DIN", 0.004, 1), ("DIN", 0.004, 2),
        ("SIMSoft", 0.002, 1), ("SIMSoft", 0.002, 2),
        ("DMGIN", 0.002, 1), ("DMGIN", 0.002, 2),
    ]  # fmt: skip
    assert missing == ["DINFull", "ETA"]  # nothing recorded / every run failed
