"""Encoder cost: forward + backward milliseconds per batch for every encoder and history length.

Each encoder runs alone on the same synthetic jagged batch (``benchmarks.synthetic_inputs``:
B samples of exactly L behaviors, 500 categories, category groups) with the configuration its
ml-1m recipe trains (``recipes/configs/ml1m_<model>.yaml``, embedding D = 2 x 16). The loss is
the sum of the output (+ SIMSoft's auxiliary logits), and backward reaches the query and
history embeddings, as in the CTR model; embedding lookups and the optimizer are not timed
(``benchmarks.cost`` times whole train steps). Also at every L: ``group_behaviors`` alone, its
share of a DMGIN step, and a pandas groupby of the same semantics (``benchmarks.grouping``).

Timings: median of ``--repeats`` after one warm-up, on a shared 2-core CPU (noisy); all in one
process, one run, so ratios compare like with like.

On a GPU (``--device cuda``, docs/gpu.md) the same step runs with the device synchronized around
every timed run, in each ``--dtype`` (``fp32``; ``bf16``: autocast with float32 weights;
``bf16-module``: module and embeddings in bfloat16), with the peak GPU memory of each
configuration. ``--budget-s`` bounds the run: a configuration whose predicted time (its time at
the previous L, scaled by L) or whose warm-up says it would not fit in what is left is skipped
and recorded under ``skipped``, as is one that runs out of memory. This path needs plain torch
only (no torchrec, fbgemm, yaml or tqdm): without the recipe loader the encoder configurations
come from ``benchmarks/encoder_recipes.json``, a copy of the recipes' model sections that the
test suite keeps equal to them (rewrite it with ``--write-recipe-snapshot``).

Usage::

    python -m benchmarks.encoders                      # B=256, L in {100, 1k, 10k}
    python -m benchmarks.encoders --smoke --output /tmp/encoders.json
    python -m benchmarks.encoders --device cuda --dtype fp32,bf16 --lengths 1000,10000,50000 \
        --budget-s 300 --output benchmarks/results/encoders_cuda.json

Results: printed and written to ``benchmarks/results/encoders.json`` (``--output``).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import (
    RESULTS_DIR,
    environment,
    markdown_table,
    time_runs,
    write_json_atomic,
)
from benchmarks.device import (
    PRECISIONS,
    device_info,
    move_inputs,
    precision_context,
    resolve_device,
    synchronize,
    time_on_device,
)
from benchmarks.synthetic_inputs import (
    RECIPE_OF,
    SyntheticSizes,
    content_table,
    encoder_inputs,
    encoder_spec,
    recipe_model_config,
)
from components.encoders.base import EncoderSpec, History, Query, SequenceEncoder
from components.encoders.registry import build_encoder, encoder_config_class
from components.model_config import ModelConfig
from components.ops.grouping import group_behaviors
from pipelines.console import parse_cli, progress

#: the recipes' model sections, for machines that cannot load the recipes (no torchrec or yaml)
RECIPE_SNAPSHOT = Path(__file__).with_name("encoder_recipes.json")

#: rows beyond the recipes: (recipe model, encoder_config overrides), to show where cost goes
EXTRA_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "DMGIN-no-intra": ("DMGIN", {"use_intra_group_transformer": False}),
}
MODELS = (*RECIPE_OF, *EXTRA_VARIANTS)
#: the issue's targets, checked at the largest L of the run
TARGETS = {
    "dmgin_over_simhard_max": 1.3,
    "dinfull_over_dmgin_min": 10.0,
    "grouping_speedup_vs_pandas_min": 50.0,
    "grouping_share_of_dmgin_step_max": 0.10,
}


def recipe_model(model: str) -> ModelConfig:
    """The ``model`` section of ``model``'s recipe; from :data:`RECIPE_SNAPSHOT` where the recipe
    loader cannot be imported (it needs torchrec and yaml)."""
    try:
        return recipe_model_config(model)
    except ImportError:
        return ModelConfig(**json.loads(RECIPE_SNAPSHOT.read_text())[model])


def recipe_snapshot() -> dict[str, Any]:
    """What :data:`RECIPE_SNAPSHOT` holds: every recipe's model section (needs the loader)."""
    return {model: dataclasses.asdict(recipe_model_config(model)) for model in RECIPE_OF}


def encoder_fields(model: str) -> dict[str, Any]:
    """The encoder config fields of ``model``: its recipe's, plus an extra variant's overrides."""
    base, extra = EXTRA_VARIANTS.get(model, (model, {}))
    return {**recipe_model(base).encoder_config, **extra}


def build(model: str, spec: EncoderSpec, sizes: SyntheticSizes) -> SequenceEncoder:
    """The encoder of ``model``'s recipe (CiUBM with a random frozen content table)."""
    config = recipe_model(EXTRA_VARIANTS.get(model, (model, {}))[0])
    encoder_config = encoder_config_class(config.encoder)(**encoder_fields(model))
    if config.encoder == "CiUBM":
        from components.encoders.ciubm import CiUBM

        return CiUBM(spec, encoder_config, content_embeddings=content_table(sizes))
    return build_encoder(config.encoder, spec, encoder_config)


def median_ms(step: Callable[[], Any], repeats: int) -> tuple[float, list[float]]:
    """Median milliseconds of ``step`` over ``repeats`` runs after one warm-up run."""
    median, times, _ = time_runs(step, repeats)
    return round(median, 2), [round(t, 2) for t in times]


def fwd_bwd_step(
    encoder: SequenceEncoder, query: Query, history: History, precision: str = "fp32"
) -> Callable[[], None]:
    device = query.embeddings.device

    def step() -> None:
        encoder.zero_grad(set_to_none=True)
        query.embeddings.grad = None
        history.embeddings.grad = None
        with precision_context(device, precision):
            interest, aux = encoder.forward_with_aux(query, history)
        zero = torch.zeros((), device=device)
        loss = interest.float().sum() + sum((logits.float().sum() for logits in aux.values()), zero)
        loss.backward()

    return step


def grouping_inputs(history: History) -> dict[str, torch.Tensor]:
    return {
        "group_ids": history.group_ids,
        "offsets": history.offsets,
        "behavior_ids": history.behavior_ids,
        "age": history.age,
        "numeric": history.numeric,
    }


def measure_length(
    length: int, args: argparse.Namespace, sizes: SyntheticSizes, models: list[str]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    spec = encoder_spec(recipe_model("DMGIN"), sizes)
    query, history = encoder_inputs(spec, args.batch, length, sizes, seed=length)
    rows = []
    for model in progress(models, desc=f"L={length}", unit="model"):
        torch.manual_seed(0)
        encoder = build(model, spec, sizes).train()
        ms, all_ms = median_ms(fwd_bwd_step(encoder, query, history), args.repeats)
        rows.append(
            {
                "model": model,
                "length": length,
                "batch": args.batch,
                "fwd_bwd_ms": ms,
                "runs_ms": all_ms,
            }
        )
        del encoder
    dmgin = recipe_model("DMGIN").encoder_config
    inputs = grouping_inputs(history)
    g, m = int(dmgin.get("max_groups", 32)), int(dmgin.get("max_per_group", 16))
    op_ms, _ = median_ms(
        lambda: group_behaviors(
            **inputs, max_groups=g, max_per_group=m, num_behaviors=spec.num_behaviors
        ),
        args.repeats,
    )
    grouping: dict[str, Any] = {"length": length, "batch": args.batch, "group_behaviors_ms": op_ms}
    if not args.skip_pandas:
        from benchmarks.grouping import group_behaviors_pandas  # pandas: the CPU baseline only

        pandas_ms, _ = median_ms(
            lambda: group_behaviors_pandas(inputs, g, m, spec.num_behaviors),
            max(1, args.repeats - 2),
        )
        grouping.update(pandas_ms=pandas_ms, speedup_vs_pandas=round(pandas_ms / op_ms, 1))
    step = {row["model"]: row["fwd_bwd_ms"] for row in rows}
    if "DMGIN" in step:
        grouping["share_of_dmgin_step"] = round(op_ms / step["DMGIN"], 3)
    return rows, grouping


class Budget:
    """Seconds left of ``--budget-s`` (unbounded when None)."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.deadline = None if seconds is None else time.monotonic() + seconds

    def left(self) -> float:
        return math.inf if self.deadline is None else self.deadline - time.monotonic()


def measure_length_on_device(
    length: int,
    args: argparse.Namespace,
    sizes: SyntheticSizes,
    models: list[str],
    device: torch.device,
    budget: Budget,
    seen: dict[tuple[str, str], tuple[int, float]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """:func:`measure_length` on ``device`` in every precision of ``args.dtype``, within
    ``budget``: ``(rows, skipped, grouping)``. ``seen`` maps (model, precision) to its last
    ``(L, ms)``, from which the time at this L is predicted (linear in L)."""
    spec = encoder_spec(recipe_model("DMGIN"), sizes)
    cpu_query, cpu_history = encoder_inputs(spec, args.batch, length, sizes, seed=length)
    rows: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    base = {"length": length, "batch": args.batch, "device": str(device)}
    for precision in args.dtype:
        query, history = move_inputs(cpu_query, cpu_history, device, precision)
        for model in progress(models, desc=f"L={length} {precision}", unit="model"):
            where = {"model": model, **base, "precision": precision}
            left = budget.left()
            if (model, precision) in seen:
                prev_length, prev_ms = seen[(model, precision)]
                predicted_s = prev_ms / 1e3 * length / prev_length * (args.repeats + 1)
                if predicted_s > left:
                    skipped.append(
                        {**where, "reason": f"predicted {predicted_s:.0f} s > {left:.0f} s left"}
                    )
                    continue
            elif left <= 0:
                skipped.append({**where, "reason": "time budget spent"})
                continue
            try:
                torch.manual_seed(0)
                encoder = build(model, spec, sizes).to(device).train()
                if precision == "bf16-module":
                    encoder = encoder.to(torch.bfloat16)
                step = fwd_bwd_step(encoder, query, history, precision)
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                start = time.perf_counter()
                step()  # the warm-up
                synchronize(device)
                warmup_ms = (time.perf_counter() - start) * 1e3
                if warmup_ms / 1e3 * args.repeats > budget.left():
                    reason = f"warm-up {warmup_ms:.0f} ms x {args.repeats} > time left"
                    skipped.append({**where, "reason": reason, "warmup_ms": round(warmup_ms, 1)})
                    continue
                ms, runs = time_on_device(step, args.repeats, device, warmup=0)
                row = {**where, "fwd_bwd_ms": round(ms, 3), "runs_ms": [round(t, 3) for t in runs]}
                row["warmup_ms"] = round(warmup_ms, 1)
                if device.type == "cuda":
                    row["peak_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
                rows.append(row)
                seen[(model, precision)] = (length, ms)
            except torch.cuda.OutOfMemoryError as err:
                skipped.append({**where, "reason": f"out of memory: {str(err)[:200]}"})
            finally:
                encoder = step = None  # type: ignore[assignment]
                gc.collect()
                if device.type == "cuda":
                    torch.cuda.empty_cache()
        del query, history
    dmgin = recipe_model("DMGIN").encoder_config
    inputs = {k: v.to(device) for k, v in grouping_inputs(cpu_history).items()}
    g, m = int(dmgin.get("max_groups", 32)), int(dmgin.get("max_per_group", 16))
    op_ms, _ = time_on_device(
        lambda: group_behaviors(
            **inputs, max_groups=g, max_per_group=m, num_behaviors=spec.num_behaviors
        ),
        args.repeats,
        device,
    )
    grouping: dict[str, Any] = {**base, "group_behaviors_ms": round(op_ms, 3)}
    step_ms = {r["model"]: r["fwd_bwd_ms"] for r in rows if r["precision"] == "fp32"}
    if "DMGIN" in step_ms:
        grouping["share_of_dmgin_step"] = round(op_ms / step_ms["DMGIN"], 3)
    return rows, skipped, grouping


def check_targets(rows: list[dict[str, Any]], grouping: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's targets at the largest L measured (None where a model was not run)."""
    top = max(row["length"] for row in rows)
    step = {row["model"]: row["fwd_bwd_ms"] for row in rows if row["length"] == top}
    group = next(g for g in grouping if g["length"] == top)

    def ratio(a: str, b: str) -> float | None:
        return round(step[a] / step[b], 2) if a in step and b in step else None

    found = {
        "length": top,
        "dmgin_over_simhard": ratio("DMGIN", "SIMHard"),
        "dinfull_over_dmgin": ratio("DINFull", "DMGIN"),
        "grouping_speedup_vs_pandas": group.get("speedup_vs_pandas"),
        "grouping_share_of_dmgin_step": group.get("share_of_dmgin_step"),
    }
    met = {
        "dmgin_over_simhard": TARGETS["dmgin_over_simhard_max"],
        "dinfull_over_dmgin": TARGETS["dinfull_over_dmgin_min"],
        "grouping_speedup_vs_pandas": TARGETS["grouping_speedup_vs_pandas_min"],
        "grouping_share_of_dmgin_step": TARGETS["grouping_share_of_dmgin_step_max"],
    }
    upper = {"dmgin_over_simhard", "grouping_share_of_dmgin_step"}
    found["met"] = {
        key: None
        if found[key] is None
        else (found[key] <= bound if key in upper else found[key] >= bound)
        for key, bound in met.items()
    }
    found["targets"] = TARGETS
    return found


def render_markdown(results: dict[str, Any]) -> str:
    """Forward+backward ms table (models x L) and the grouping rows."""
    lengths = sorted({row["length"] for row in results["results"]})
    models = list(dict.fromkeys(row["model"] for row in results["results"]))
    cell = {(r["model"], r["length"]): r["fwd_bwd_ms"] for r in results["results"]}
    header = ["encoder", *(f"L={n:,}" for n in lengths)]
    table = [[m, *(f"{cell.get((m, n), float('nan')):.1f}" for n in lengths)] for m in models]
    grouping = [
        [
            f"L={g['length']:,}",
            f"{g['group_behaviors_ms']:.1f}",
            f"{g.get('pandas_ms', float('nan')):.1f}",
            f"{g.get('speedup_vs_pandas', float('nan'))}x",
            f"{100 * g.get('share_of_dmgin_step', float('nan')):.0f}%",
        ]
        for g in results["grouping"]
    ]
    return "\n\n".join(
        [
            f"Forward + backward ms per batch (B={results['settings']['batch']}):",
            markdown_table(header, table),
            markdown_table(
                ["grouping", "group_behaviors ms", "pandas ms", "speedup", "share of DMGIN step"],
                grouping,
            ),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=256, help="B samples per batch")
    parser.add_argument("--lengths", default="100,1000,10000", help="history lengths L")
    parser.add_argument("--models", default="all", help=f"comma-separated subset of {MODELS}")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after one warm-up")
    parser.add_argument("--skip-pandas", action="store_true", help="do not time the pandas twin")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (seconds), for tests")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "encoders.json")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--dtype", default="fp32", help=f"comma-separated subset of {PRECISIONS}")
    parser.add_argument("--budget-s", type=float, help="skip what would not fit in this many s")
    parser.add_argument(
        "--write-recipe-snapshot", action="store_true", help=f"rewrite {RECIPE_SNAPSHOT.name}"
    )
    args = parse_cli(parser, argv)
    if args.write_recipe_snapshot:
        write_json_atomic(RECIPE_SNAPSHOT, recipe_snapshot())
        print(f"wrote {RECIPE_SNAPSHOT}")
        return 0
    if args.smoke:
        args.batch, args.lengths, args.repeats = 4, "20,60", 1
    models = list(MODELS) if args.models == "all" else args.models.split(",")
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        print(f"error: unknown model(s) {unknown}; choose from {list(MODELS)}", file=sys.stderr)
        return 2
    args.dtype = args.dtype.split(",")
    bad = sorted(set(args.dtype) - set(PRECISIONS))
    if bad:
        print(f"error: unknown dtype(s) {bad}; choose from {list(PRECISIONS)}", file=sys.stderr)
        return 2
    lengths = [int(x) for x in args.lengths.split(",")]
    sizes = SyntheticSizes()
    device = resolve_device(args.device)
    if device.type != "cpu" or args.dtype != ["fp32"] or args.budget_s is not None:
        return run_on_device(args, device, models, lengths, sizes)
    rows: list[dict[str, Any]] = []
    grouping: list[dict[str, Any]] = []
    for length in progress(lengths, desc="lengths"):
        length_rows, length_grouping = measure_length(length, args, sizes, models)
        rows += length_rows
        grouping.append(length_grouping)
    results = {
        "benchmark": "encoders",
        "environment": environment(),
        "torch_threads": torch.get_num_threads(),
        "settings": {
            "batch": args.batch,
            "lengths": lengths,
            "repeats": args.repeats,
            "smoke": args.smoke,
            "sizes": dataclasses.asdict(sizes),
            "configs": {m: encoder_fields(m) for m in models},
        },
        "note": "median of repeats after a warm-up; encoder alone (no lookups, no optimizer); "
        "shared 2-core CPU, noisy",
        "results": rows,
        "grouping": grouping,
        "targets": check_targets(rows, grouping),
    }
    write_json_atomic(args.output, results)
    print(render_markdown(results))
    print("targets at L =", results["targets"]["length"], results["targets"]["met"])
    print(f"wrote {args.output}")
    return 0


def run_on_device(
    args: argparse.Namespace,
    device: torch.device,
    models: list[str],
    lengths: list[int],
    sizes: SyntheticSizes,
) -> int:
    """The ``--device`` / ``--dtype`` / ``--budget-s`` run (see the module docstring)."""
    budget = Budget(args.budget_s)
    seen: dict[tuple[str, str], tuple[int, float]] = {}
    rows: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    grouping: list[dict[str, Any]] = []
    for length in progress(lengths, desc="lengths"):
        length_rows, length_skipped, length_grouping = measure_length_on_device(
            length, args, sizes, models, device, budget, seen
        )
        rows += length_rows
        skipped += length_skipped
        grouping.append(length_grouping)
        print(
            f"L={length}: {len(length_rows)} measured, {len(length_skipped)} skipped, "
            f"{budget.left():.0f} s left",
            flush=True,
        )
        # written after every L, so that a run killed by its time limit keeps what it measured
        write_json_atomic(
            args.output,
            {"benchmark": "encoders", "partial": True, "results": rows, "skipped": skipped},
        )
    targets = {}
    for precision in args.dtype:
        measured = [r for r in rows if r["precision"] == precision]
        targets[precision] = check_targets(measured, grouping) if measured else None
    results = {
        "benchmark": "encoders",
        "environment": environment(),
        "device": device_info(device),
        "torch_threads": torch.get_num_threads(),
        "settings": {
            "batch": args.batch,
            "lengths": lengths,
            "repeats": args.repeats,
            "smoke": args.smoke,
            "precisions": args.dtype,
            "budget_s": args.budget_s,
            "sizes": dataclasses.asdict(sizes),
            "configs": {m: encoder_fields(m) for m in models},
            "recipes": "recipes/configs" if _recipe_loader() else RECIPE_SNAPSHOT.name,
        },
        "note": "median of repeats after a warm-up, device synchronized around each run; "
        "encoder alone (no lookups, no optimizer); bf16 = autocast with float32 weights, "
        "bf16-module = module and embeddings in bfloat16",
        "results": rows,
        "skipped": skipped,
        "grouping": grouping,
        "targets": targets,
    }
    write_json_atomic(args.output, results)
    for precision in args.dtype:
        part = {**results, "results": [r for r in rows if r["precision"] == precision]}
        print(f"[{device} {precision}]")
        print(render_markdown(part))
    for skip in skipped:
        print(f"skipped {skip['model']} L={skip['length']} {skip['precision']}: {skip['reason']}")
    print(f"wrote {args.output}")
    return 0


def _recipe_loader() -> bool:
    try:
        import pipelines.train.config  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    raise SystemExit(main())
