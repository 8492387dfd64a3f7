"""Cost of sequence compression (DMGIN) against two-stage retrieval (SIM family) as L grows.

For every model and history length L (synthetic, ``benchmarks.synthetic_inputs``) one fresh
process (``benchmarks.cost_worker``) measures: the CTR model's train step (forward + backward +
Adam) in ms and samples/s, inference ms per user with C candidates (DMGIN also from its cached
user state), and peak RSS. This script runs the grid, adds ratios to SIMHard at the same L
(measured in the same run), and writes ``benchmarks/results/cost.json``, ``cost.md`` and a
log-log plot ``cost.png``. A (model, L) that fails or runs past ``--timeout`` is recorded with
its error and the grid goes on.

Usage::

    python -m benchmarks.cost                           # L in {100, 1k, 5k, 10k, 50k}, B=64
    python -m benchmarks.cost --smoke --output-dir /tmp/cost
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks.common import (
    REPO_ROOT,
    RESULTS_DIR,
    child_env,
    environment,
    markdown_table,
    write_json_atomic,
)
from pipelines.console import parse_cli, progress

MODELS = ("DIN", "DINFull", "SIMHard", "SIMSoft", "ETA", "CiUBM", "DMGIN", "TWIN", "SDIM", "TWINV2")
BASELINE = "SIMHard"
TARGETS = {
    "dmgin_step_over_simhard_max": 1.3,
    "dinfull_step_over_dmgin_min": 10.0,
    "dmgin_cached_over_full_per_candidate_max": 0.2,
    # "DMGIN peak memory flat in L past grouping": the encoder's saved activations at the
    # largest L over those at the target L (grouping caps them at G groups x M behaviors)
    "dmgin_encoder_saved_growth_max": 1.05,
}


def run_worker(model: str, length: int, args: argparse.Namespace) -> dict[str, Any]:
    """One (model, L) measurement in a fresh interpreter; errors become a row with ``error``."""
    command = [
        sys.executable, "-m", "benchmarks.cost_worker", model, str(length),
        "--batch", str(args.batch), "--users", str(args.users),
        "--candidates", str(args.candidates), "--repeats", str(args.repeats),
    ]  # fmt: skip
    try:
        done = subprocess.run(
            command, cwd=REPO_ROOT, env=child_env(), capture_output=True, text=True,
            timeout=args.timeout,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"model": model, "length": length, "error": f"timeout after {args.timeout} s"}
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return {"model": model, "length": length, "error": done.stderr.strip()[-2000:]}
    return json.loads(lines[-1])


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """``*_over_simhard`` for train step, inference and peak RSS, per L."""
    base = {r["length"]: r for r in rows if r["model"] == BASELINE and "error" not in r}
    for row in rows:
        ref = base.get(row["length"])
        if ref is None or "error" in row:
            continue
        row["step_over_simhard"] = round(row["train_step_ms"] / ref["train_step_ms"], 3)
        if "train_step_full_lookup_ms" in row and "train_step_full_lookup_ms" in ref:
            row["full_lookup_step_over_simhard"] = round(
                row["train_step_full_lookup_ms"] / ref["train_step_full_lookup_ms"], 3
            )
        row["inference_over_simhard"] = round(
            row["inference_ms_per_user"] / ref["inference_ms_per_user"], 3
        )
        if "serving_ms_per_user" in row and "serving_ms_per_user" in ref:
            row["serving_over_simhard"] = round(
                row["serving_ms_per_user"] / ref["serving_ms_per_user"], 3
            )
        if "cached_inference_ms_per_user" in row:
            row["cached_inference_over_simhard"] = round(
                row["cached_inference_ms_per_user"] / ref["inference_ms_per_user"], 3
            )
        row["peak_rss_over_simhard"] = round(row["peak_rss_mib"] / ref["peak_rss_mib"], 3)


def _saved_growth(rows: list[dict[str, Any]], length: int) -> float | None:
    """DMGIN's encoder activations at the largest L measured over those at ``length``."""
    saved = {
        r["length"]: r["encoder_saved_mib"]
        for r in rows
        if r["model"] == "DMGIN" and "error" not in r and r.get("encoder_saved_mib")
    }
    largest = max(saved, default=None)
    if largest is None or length not in saved or largest == length:
        return None
    return round(saved[largest] / saved[length], 3)


def check_targets(rows: list[dict[str, Any]], length: int) -> dict[str, Any]:
    """The benchmark issue's cost targets at ``length`` (None where not measured)."""
    at = {r["model"]: r for r in rows if r["length"] == length and "error" not in r}
    dmgin, dinfull = at.get("DMGIN"), at.get("DINFull")
    found: dict[str, Any] = {
        "length": length,
        "dmgin_step_over_simhard": dmgin.get("step_over_simhard") if dmgin else None,
        "dinfull_step_over_dmgin": round(dinfull["train_step_ms"] / dmgin["train_step_ms"], 2)
        if dmgin and dinfull
        else None,
        "dmgin_cached_over_full_per_candidate": dmgin.get("cached_over_full_per_candidate")
        if dmgin
        else None,
        "dmgin_encoder_saved_growth": _saved_growth(rows, length),
        # the same two step ratios with every history row looked up (for the record)
        "full_lookup_dmgin_step_over_simhard": dmgin.get("full_lookup_step_over_simhard")
        if dmgin
        else None,
        "full_lookup_dinfull_step_over_dmgin": round(
            dinfull["train_step_full_lookup_ms"] / dmgin["train_step_full_lookup_ms"], 2
        )
        if dmgin and dinfull and "train_step_full_lookup_ms" in dmgin
        else None,
    }
    bounds = {
        "dmgin_step_over_simhard": (TARGETS["dmgin_step_over_simhard_max"], "max"),
        "dinfull_step_over_dmgin": (TARGETS["dinfull_step_over_dmgin_min"], "min"),
        "dmgin_cached_over_full_per_candidate": (
            TARGETS["dmgin_cached_over_full_per_candidate_max"],
            "max",
        ),
        "dmgin_encoder_saved_growth": (TARGETS["dmgin_encoder_saved_growth_max"], "max"),
    }
    found["met"] = {
        key: None
        if found[key] is None
        else (found[key] <= bound if kind == "max" else found[key] >= bound)
        for key, (bound, kind) in bounds.items()
    }
    found["targets"] = TARGETS
    return found


def render_markdown(results: dict[str, Any]) -> str:
    """Train step / inference / memory tables (models x L), ratios to SIMHard in brackets."""
    rows = results["results"]
    lengths = sorted({r["length"] for r in rows})
    models = list(dict.fromkeys(r["model"] for r in rows))
    cell = {(r["model"], r["length"]): r for r in rows}

    def table(value: str, ratio: str | None, digits: int) -> str:
        body = []
        for model in models:
            line = [model]
            for length in lengths:
                row = cell.get((model, length), {"error": "not run"})
                if "error" in row or value not in row:
                    line.append("failed" if "error" in row else "-")
                    continue
                text = f"{row[value]:,.{digits}f}"
                if ratio and ratio in row:
                    text += f" ({row[ratio]:.2f}x)"
                line.append(text)
            body.append(line)
        return markdown_table(["model", *(f"L={n:,}" for n in lengths)], body)

    s = results["settings"]
    return "\n\n".join(
        [
            f"Train step ms, B={s['batch']}, as `pipelines.train` runs it: only the history"
            " rows the encoder reads are looked up (x SIMHard):",
            table("train_step_ms", "step_over_simhard", 1),
            "The same step with every history row looked up (`train.lookup_plan=false`;"
            " x SIMHard):",
            table("train_step_full_lookup_ms", "full_lookup_step_over_simhard", 1),
            "Fraction of the N history rows the lookup plan looks up:",
            table("history_rows_looked_up", None, 4),
            f"Inference ms per user, C={s['candidates']} candidates (x SIMHard):",
            table("inference_ms_per_user", "inference_over_simhard", 1),
            "DMGIN from its cached user state, ms per user (x SIMHard):",
            table("cached_inference_ms_per_user", "cached_inference_over_simhard", 1),
            f"Whole-model ranking ms per user, C={s['candidates']} (`rank_candidates`: history"
            " lookup, encoder, over-arch; x SIMHard):",
            table("serving_ms_per_user", "serving_over_simhard", 1),
            "Peak RSS MiB of the process (x SIMHard):",
            table("peak_rss_mib", "peak_rss_over_simhard", 0),
            "Train step peak over the inputs' RSS, MiB (activation memory):",
            table("train_peak_over_inputs_mib", None, 0),
            "The encoder's own activations: MiB its forward saves for backward (inputs, i.e. the"
            " L looked-up embeddings every model holds, excluded), B as above:",
            table("encoder_saved_mib", None, 1),
        ]
    )


def plot(results: dict[str, Any], path: Path) -> None:
    """Log-log lines of train step ms, inference ms/user and peak RSS against L."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in results["results"] if "error" not in r]
    panels = [
        ("train_step_ms", "train step ms"),
        ("inference_ms_per_user", "inference ms / user"),
        ("peak_rss_mib", "peak RSS MiB"),
    ]
    figure, axes = plt.subplots(1, len(panels), figsize=(15, 4.5))
    for axis, (key, label) in zip(axes, panels, strict=True):
        for model in dict.fromkeys(r["model"] for r in rows):
            points = sorted((r["length"], r[key]) for r in rows if r["model"] == model)
            axis.plot(*zip(*points, strict=True), marker="o", label=model)
            if key == "inference_ms_per_user" and model == "DMGIN":
                cached = sorted(
                    (r["length"], r["cached_inference_ms_per_user"])
                    for r in rows
                    if r["model"] == "DMGIN"
                )
                axis.plot(*zip(*cached, strict=True), "k--", marker="x", label="DMGIN cached")
        axis.set(xscale="log", yscale="log", xlabel="history length L", ylabel=label)
        axis.grid(True, which="both", alpha=0.3)
    if rows:
        axes[0].legend(fontsize=8)
    env = results["environment"]
    figure.suptitle(f"lifelongrec cost, {env['cpus']} CPUs, {env['date'][:10]}", fontsize=10)
    figure.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    figure.savefig(tmp, dpi=110)
    plt.close(figure)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", default="100,1000,5000,10000,50000", help="history lengths")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated models")
    parser.add_argument("--batch", type=int, default=64, help="train batch size B")
    parser.add_argument("--users", type=int, default=1, help="users scored for inference")
    parser.add_argument("--candidates", type=int, default=100, help="C candidates per user")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after a warm-up")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per (model, L)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (seconds), for tests")
    parser.add_argument("--output-dir", type=Path, default=RESULTS_DIR)
    args = parse_cli(parser, argv)
    if args.smoke:
        args.lengths, args.models, args.batch, args.candidates, args.repeats = (
            "20,60", "DIN,SIMHard,DMGIN", 4, 5, 1,
        )  # fmt: skip
    models = [m for m in args.models.split(",") if m]
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        print(f"error: unknown model(s) {unknown}; choose from {list(MODELS)}", file=sys.stderr)
        return 2
    lengths = [int(x) for x in args.lengths.split(",")]
    grid = [(model, length) for length in lengths for model in models]
    rows = []
    bar = progress(grid, desc="cost", unit="run")
    for model, length in bar:
        rows.append(run_worker(model, length, args))
        if "error" in rows[-1]:
            bar.write(f"{model} L={length} failed: {rows[-1]['error'][-300:]}")
    add_ratios(rows)
    results = {
        "benchmark": "cost",
        "environment": environment(),
        "settings": {
            "lengths": lengths,
            "models": models,
            "batch": args.batch,
            "users": args.users,
            "candidates": args.candidates,
            "repeats": args.repeats,
            "smoke": args.smoke,
        },
        "note": "one fresh process per (model, L); train step = whole CTR model as "
        "pipelines.train runs it (DistributedModelParallel, 1 rank; fused sparse optimizer in "
        "backward, dense Adam); inference at the encoder; medians of repeats after a warm-up "
        "on a shared 2-core CPU (noisy)",
        "results": rows,
        "targets": check_targets(rows, 10_000 if 10_000 in lengths else max(lengths)),
    }
    out = args.output_dir
    write_json_atomic(out / "cost.json", results)
    markdown = render_markdown(results)
    tmp = out / "cost.md.tmp"
    tmp.write_text(markdown + "\n")
    tmp.replace(out / "cost.md")
    plot(results, out / "cost.png")
    print(markdown)
    print("targets:", json.dumps(results["targets"]["met"]))
    failed = [r for r in rows if "error" in r]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
