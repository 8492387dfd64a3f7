"""The README's short results summary, rendered from ``benchmarks/results/*.json``.

:mod:`benchmarks.report` writes it between the summary markers of README.md (and the whole
results reference into docs/results.md). Three blocks, each only when its results exist: the
main job's test metrics, the quality benchmark's test AUC / GAUC per model and dataset (mean
over seeds at each model's chosen rate, with the no-model references), and the cost at one
history length.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.common import fmt, markdown_table, read_json

#: the history length of the cost summary (the issues' targets are set there)
COST_LENGTH = 10_000
#: the dataset the quality targets are set on; elsewhere the differences are shown without a verdict
TARGET_DATASET = "ml-1m-u2999"


def _quality_results(results: Path) -> list[dict[str, Any]]:
    out = []
    for path in sorted(results.glob("quality_*.json")):
        data = read_json(path)
        if data and not data.get("smoke") and data.get("runs"):
            out.append(data)
    return out


#: the history length of a ``--max-len`` sweep shown in the per-dataset table (the recipes')
SWEEP_TABLE_LENGTH = 1_000


def quality_summary(results: Path) -> str | None:
    """One table: a row per model, test AUC and GAUC for every dataset with results (of a
    ``--max-len`` sweep only its L=1,000 point), then one quality-versus-length table per sweep."""
    from benchmarks.quality.length import length_sweeps, render_length_table, sweep_key
    from benchmarks.quality.report import quality_targets, summarize

    everything = _quality_results(results)
    if not everything:
        return None
    sweeps = length_sweeps(everything)
    datasets = [
        d
        for d in everything
        if (key := sweep_key(str(d.get("dataset", "")))) is None or key[1] == SWEEP_TABLE_LENGTH
    ]
    by_dataset = [{r["model"]: r for r in summarize(d) if r["lr"] is not None} for d in datasets]
    models: list[str] = []
    for rows in by_dataset:
        models += [m for m in rows if m not in models]
    from benchmarks.quality.variants import VARIANTS

    order = {name: i for i, name in enumerate(VARIANTS)}  # the benchmark's order, not the files'
    models.sort(key=lambda m: order.get(m, len(order)))
    header = ["model"]
    for data in datasets:
        header += [f"{data['dataset']} AUC", "GAUC"]
    table = []
    for model in models:
        cells = [model]
        for rows in by_dataset:
            row = rows.get(model)
            cells += (
                [fmt(row["test_auc"]["mean"]), fmt(row["test_gauc"]["mean"])] if row else ["-", "-"]
            )
        table.append(cells)
    for label, key in (("floor (no model)", "floor"), ("repeat count (no model)", "repeat_count")):
        cells = [label]
        for data in datasets:
            test = (data.get(key) or {}).get("test") or {}
            cells += [fmt(test.get("auc")), fmt(test.get("gauc"))]
        table.append(cells)
    seeds = sorted({len(r["seeds"]) for rows in by_dataset for r in rows.values()})
    fewer = (
        sorted(
            {name for rows in by_dataset for name, r in rows.items() if len(r["seeds"]) < seeds[-1]}
        )
        if seeds
        else []
    )
    over = f"{seeds[-1]} seeds" if seeds else "the seeds"
    if fewer:
        over += f" ({', '.join(fewer)}: {'/'.join(str(s) for s in seeds[:-1])} so far)"
    lines = [
        f"Quality (test split, mean over {over} at each model's learning rate chosen on valid; "
        "`python -m benchmarks.quality`):",
        markdown_table(header, table),
    ]
    for data in datasets:
        t = quality_targets(data)
        below = t.get("below_floor") or []
        parts = []
        for other in ("SIMSoft", "DINFull"):
            e = t[f"minus_{other}"]
            if e["met"] is None:
                continue
            part = f"{t['model']} - {other} {e['mean']:+.4f}"
            if data["dataset"] == TARGET_DATASET:
                part += f" (target >= {e['margin']:+.3f}: {'met' if e['met'] else 'missed'})"
            parts.append(part)
        parts.append(
            "every model above the floor" if not below else "below the floor: " + ", ".join(below)
        )
        lines.append(f"{data['dataset']}: " + "; ".join(parts) + ".")
    lines += [render_length_table(name, p, swept_only=True) for name, p in sweeps.items()]
    return "\n\n".join(lines)


def cost_summary(results: Path, length: int = COST_LENGTH) -> str | None:
    """Train step, inference and ranking ms per model at one history length."""
    data = read_json(results / "cost.json")
    if not data or data["settings"].get("smoke"):
        return None
    rows = [r for r in data["results"] if r.get("length") == length and "error" not in r]
    if not rows:
        return None

    def ms(row: dict[str, Any], key: str) -> str:
        value = row.get(key)
        return "-" if value is None else f"{value:,.1f}"

    table = [
        [
            r["model"],
            ms(r, "train_step_ms"),
            ms(r, "train_step_full_lookup_ms"),
            ms(r, "inference_ms_per_user"),
            ms(r, "serving_ms_per_user"),
        ]
        for r in rows
    ]
    batch = rows[0].get("batch")
    candidates = rows[0].get("candidates")
    header = [
        "model",
        f"train step ms (B={batch})",
        "same, every row looked up",
        f"encoder ms per user (C={candidates})",
        "whole-model ranking ms per user",
    ]
    return "\n\n".join(
        [
            f"Cost at history length L={length:,} on this 2-core CPU (`python -m benchmarks.cost`):",
            markdown_table(header, table),
        ]
    )


def render_summary(results: Path, main_job: str | None) -> str:
    """The README block (without the markers); ``main_job`` is the main job's rendered table."""
    blocks = [
        "Rendered by `python -m benchmarks.report` from `benchmarks/results/`; every table, the "
        "settings, the targets and how to read them are in [docs/results.md](docs/results.md).",
    ]
    blocks += [b for b in (main_job, quality_summary(results), cost_summary(results)) if b]
    return "\n\n".join(blocks) + "\n"
