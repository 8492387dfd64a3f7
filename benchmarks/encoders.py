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

Usage::

    python -m benchmarks.encoders                      # B=256, L in {100, 1k, 10k}
    python -m benchmarks.encoders --smoke --output /tmp/encoders.json

Results: printed and written to ``benchmarks/results/encoders.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from benchmarks.common import (
    RESULTS_DIR,
    environment,
    markdown_table,
    time_runs,
    write_json_atomic,
)
from benchmarks.grouping import group_behaviors_pandas
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
from components.ops.grouping import group_behaviors

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


def encoder_fields(model: str) -> dict[str, Any]:
    """The encoder config fields of ``model``: its recipe's, plus an extra variant's overrides."""
    base, extra = EXTRA_VARIANTS.get(model, (model, {}))
    return {**recipe_model_config(base).encoder_config, **extra}


def build(model: str, spec: EncoderSpec, sizes: SyntheticSizes) -> SequenceEncoder:
    """The encoder of ``model``'s recipe (CiUBM with a random frozen content table)."""
    config = recipe_model_config(EXTRA_VARIANTS.get(model, (model, {}))[0])
    encoder_config = encoder_config_class(config.encoder)(**encoder_fields(model))
    if config.encoder == "CiUBM":
        from components.encoders.ciubm import CiUBM

        return CiUBM(spec, encoder_config, content_embeddings=content_table(sizes))
    return build_encoder(config.encoder, spec, encoder_config)


def median_ms(step: Callable[[], Any], repeats: int) -> tuple[float, list[float]]:
    """Median milliseconds of ``step`` over ``repeats`` runs after one warm-up run."""
    median, times, _ = time_runs(step, repeats)
    return round(median, 2), [round(t, 2) for t in times]


def fwd_bwd_step(encoder: SequenceEncoder, query: Query, history: History) -> Callable[[], None]:
    def step() -> None:
        encoder.zero_grad(set_to_none=True)
        query.embeddings.grad = None
        history.embeddings.grad = None
        interest, aux = encoder.forward_with_aux(query, history)
        loss = interest.sum() + sum((logits.sum() for logits in aux.values()), torch.zeros(()))
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
    spec = encoder_spec(recipe_model_config("DMGIN"), sizes)
    query, history = encoder_inputs(spec, args.batch, length, sizes, seed=length)
    rows = []
    for model in tqdm(models, desc=f"L={length}", leave=False):
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
    dmgin = recipe_model_config("DMGIN").encoder_config
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
        pandas_ms, _ = median_ms(
            lambda: group_behaviors_pandas(inputs, g, m, spec.num_behaviors),
            max(1, args.repeats - 2),
        )
        grouping.update(pandas_ms=pandas_ms, speedup_vs_pandas=round(pandas_ms / op_ms, 1))
    step = {row["model"]: row["fwd_bwd_ms"] for row in rows}
    if "DMGIN" in step:
        grouping["share_of_dmgin_step"] = round(op_ms / step["DMGIN"], 3)
    return rows, grouping


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
    args = parser.parse_args(argv)
    if args.smoke:
        args.batch, args.lengths, args.repeats = 4, "20,60", 1
    models = list(MODELS) if args.models == "all" else args.models.split(",")
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        print(f"error: unknown model(s) {unknown}; choose from {list(MODELS)}", file=sys.stderr)
        return 2
    lengths = [int(x) for x in args.lengths.split(",")]
    sizes = SyntheticSizes()
    rows: list[dict[str, Any]] = []
    grouping: list[dict[str, Any]] = []
    for length in tqdm(lengths, desc="lengths"):
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


if __name__ == "__main__":
    raise SystemExit(main())
