"""Quality benchmark: every model variant trained the same way on one dataset, several seeds.

For each (variant, learning rate, seed) a fresh child process runs::

    python -m pipelines.train --config recipes/configs/<prefix>_<recipe>.yaml key=value...

with the variant's overrides (:mod:`benchmarks.quality.variants`), the dataset's paths
(:mod:`benchmarks.quality.data`), ``optim.dense_lr`` from the grid, ``train.epochs``, the seed
(``train.seed`` and ``loader.seed``), no mid-epoch checkpoints, and ``train.output_dir`` under
``runs/bench/quality/<dataset>/<variant>/lr<lr>_s<seed>``. The child's output goes to
``bench.log`` there; its ``metrics.json`` gives valid/test AUC, GAUC, logloss, train seconds and
the trainer's own peak RSS. Embedding dims, batch, history length and the sparse optimizer come
from the recipes, which share them (the results file records which settings are identical for
every model and which differ).

Resumable: each finished run is recorded at once in ``<results-dir>/quality_<dataset>.json``
(locked, atomic) under its variant and ``lr<lr>_s<seed>`` with the hash of its resolved config;
a run already recorded as ok with the same hash is skipped, so a killed benchmark continues
where it stopped and a changed recipe re-runs only what it changes. A failed run is recorded
with its log tail and the benchmark goes on; the exit code is 1 when any run failed.

The learning rate is chosen per model by mean valid AUC over seeds (:mod:`benchmarks.quality.report`);
``quality_<dataset>.md`` and ``.png`` are rewritten from the JSON at the end. With
``--lr-search-seeds`` the grid runs on those seeds first; the other ``--seeds`` then run only at
each model's rate chosen from what is recorded (:func:`benchmarks.quality.plan.runs_at_chosen_rates`).

``--dataset`` is a named dataset or the path of any prepared directory (a user's own log through
``python -m pipelines.prepare --events ... --out DIR``): the same protocol, with the generic
``ml1m_*`` recipes; variants that need item text (content-cluster DMGIN, CiUBM) are left out,
with a printed reason, when the manifest names no text fields. ``--max-len`` changes
``loader.max_len`` for every model and writes its own results file
(``quality_<dataset>-L<max_len>.json``), for quality-versus-history-length tables.
``--train-samples N`` trains every model and seed on the same seeded subsample of N train
samples (:mod:`pipelines.data.subsample`; valid and test whole; results file
``quality_<dataset>-n<N>.json``), for logs whose samples cost more CPU than the budget holds; the
floor is then fit on the same subsample, and the floor fit on the whole train split is reported
beside it. ``--budget-minutes`` bounds the wall time: no run starts once it is spent, and the runs left
are listed (and recorded as not run), never silently dropped.

Usage::

    python -m benchmarks.quality --dataset ml-1m-u2999 [--models all|DIN,DMGIN,...]
        [--seeds 0,1,2] [--lr-search-seeds 0] [--lrs 0.002,0.004] [--epochs 2]
        [--data-dir data] [--k 64] [--max-len 10000] [--train-samples 40000]
        [--budget-minutes 60]
    python -m benchmarks.quality --dataset path/to/prepared_dir --budget-minutes 30
    python -m benchmarks.quality --smoke --results-dir /tmp/out   # tiny synthetic run, < 1 min
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import (
    REPO_ROOT,
    RESULTS_DIR,
    environment,
    finite_or_none,
    git_state,
    read_json,
    run_logged,
    tail,
    update_json,
    utc_now,
    write_text_atomic,
)
from benchmarks.quality.data import (
    DATASETS,
    DatasetSpec,
    dataset_facts,
    ensure_content,
    ensure_groups,
    ensure_prepared,
    ensure_raw_content,
    floor_metrics,
    has_item_text,
    repeat_count_metrics,
    resolve_dataset,
)
from benchmarks.quality.plan import (
    LR_KEY,
    PlannedRun,
    display_path,
    merge_settings,
    plan_runs,
    runs_at_chosen_rates,
    shared_settings,
)
from benchmarks.quality.report import plot_quality, render_quality_markdown, summarize
from benchmarks.quality.variants import (
    VARIANTS,
    parse_models,
)
from pipelines.console import parse_cli, progress

__all__ = ["main", "render_quality_markdown", "summarize"]

#: same for every run: no mid-epoch checkpoints (the epoch-end one is kept), test scored
#: ``train.lookup_plan=false``: the protocol's first runs looked up every history row; the plan
#: changes step time, not the model, so every run keeps the full lookup for comparable times
BENCH_OVERRIDES = (
    "train.checkpoint_every=0",
    "train.keep_checkpoints=1",
    "train.eval_test=true",
    "train.lookup_plan=false",
)
SMOKE_MODELS = "DIN,SIMHard,DMGIN,CiUBM"
#: the smoke data has 640 train samples: 4 steps of 64 (a recipe batch of 1024 gives none, as
#: train batches drop the last partial one); only the plumbing is tested, not the quality
SMOKE_OVERRIDES = (
    "loader.batch_size=64",
    "loader.max_len=200",
    "train.eval_batch_size=256",
    "train.max_steps=4",
)
SMOKE_LR = 0.002  # the recipes' dense_lr


def _metrics(block: dict[str, Any] | None) -> dict[str, float | None]:
    block = block or {}
    return {k: finite_or_none(block.get(k)) for k in ("auc", "gauc", "logloss", "gauc_coverage")}


def selected_valid(summary: dict[str, Any], output_dir: Path) -> dict[str, Any] | None:
    """The valid metrics of the state the test split was scored with (``metrics.json``'s
    ``best_valid`` when the best state was; older runs: that step's valid line of
    ``metrics.jsonl``); the last evaluation's when the last state was scored."""
    if not str(summary.get("test_state", "")).startswith("best"):
        return summary.get("valid")
    if summary.get("best_valid"):
        return summary["best_valid"]
    step = (summary.get("best") or {}).get("step")
    lines = output_dir / "metrics.jsonl"
    if step is not None and lines.is_file():
        for line in lines.read_text().splitlines():
            row = json.loads(line)
            if row.get("split") == "valid" and row.get("step") == step:
                return row
    return summary.get("valid")


def refresh_selected_valid(record: dict[str, Any]) -> bool:
    """Give a record stored before ``valid_last`` existed (its ``valid`` then was the last
    evaluation's) the selected state's valid metrics, from its run folder when that is still
    on disk; whether it changed."""
    if "valid_last" in record or record.get("status") != "ok":
        return False
    output_dir = REPO_ROOT / record["output_dir"]
    metrics_path = output_dir / "metrics.json"
    if not metrics_path.is_file():
        return False
    summary = read_json(metrics_path)
    record["valid_last"] = _metrics(summary.get("valid"))
    record["valid"] = _metrics(selected_valid(summary, output_dir))
    return True


def train_one(run: PlannedRun, timeout: float | None) -> dict[str, Any]:
    """Train ``run`` in a child process; the record to store (status ok or failed)."""
    if run.output_dir.exists():
        shutil.rmtree(run.output_dir)  # a stale or half-finished run of an older config
    log = run.output_dir / "bench.log"
    record: dict[str, Any] = {
        "variant": run.variant.name,
        "lr": run.lr,
        "seed": run.seed,
        "hash": run.hash,
        "config": display_path(run.config),
        "overrides": [o for o in run.overrides if not o.startswith("train.output_dir=")],
        "output_dir": display_path(run.output_dir),
        "log": display_path(log),
        "commit": git_state()["commit"],
        "started": utc_now(),
    }
    args = ["-m", "pipelines.train", "--config", str(run.config), *run.overrides]
    error = ""
    start = time.perf_counter()
    try:
        done = run_logged(args, log, timeout=timeout)
        returncode: int | None = done.returncode
    except Exception as err:  # timeout or a failure to start: record it, go on
        returncode, error = None, f"{type(err).__name__}: {err}"
    record["wall_seconds"] = round(time.perf_counter() - start, 2)
    metrics_path = run.output_dir / "metrics.json"
    if returncode == 0 and metrics_path.is_file():
        summary = read_json(metrics_path)
        record.update(
            status="ok",
            valid=_metrics(selected_valid(summary, run.output_dir)),
            valid_last=_metrics(summary.get("valid")),
            test=_metrics(summary.get("test")),
            steps=summary.get("steps"),
            train_seconds=finite_or_none(summary.get("train_seconds")),
            peak_rss_mib=finite_or_none(summary.get("peak_rss_mib")),
        )
        if record["valid"]["auc"] is not None and record["test"]["auc"] is not None:
            return record
        error = "metrics.json has no finite valid/test AUC"
    elif returncode is not None:
        error = f"exit code {returncode}" + ("" if returncode else ", no metrics.json")
    record.update(status="failed", error=error, log_tail=tail(log))
    return record


def _parse_list(text: str, kind: type) -> list[Any]:
    try:
        values = [kind(x) for x in text.split(",") if x.strip()]
    except ValueError as err:
        raise SystemExit(f"cannot parse {text!r}: {err}") from err
    if not values:
        raise SystemExit(f"empty list {text!r}")
    return values


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command line; ``--smoke`` fills in its own dataset, models, seed, lr and epochs."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dataset",
        default=None,
        help=f"one of {', '.join(sorted(DATASETS))}, or the path of a prepared directory",
    )
    parser.add_argument("--models", default=None, help="'all' or comma-separated variant names")
    parser.add_argument("--seeds", default=None, help="comma-separated (default 0,1,2)")
    parser.add_argument("--lrs", default=None, help=f"{LR_KEY} grid (default 0.002,0.004)")
    parser.add_argument(
        "--lr-search-seeds",
        default=None,
        help="seeds that run the whole lr grid; the other --seeds then run only at each model's "
        "chosen rate (default: every seed runs the whole grid)",
    )
    parser.add_argument("--epochs", type=int, default=None, help="train.epochs (default 2)")
    parser.add_argument("--data-dir", type=Path, default=REPO_ROOT / "data")
    parser.add_argument("--runs-dir", type=Path, default=REPO_ROOT / "runs" / "bench" / "quality")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--k", type=int, default=64, help="K-means groups for DMGIN (content)")
    parser.add_argument(
        "--max-len",
        type=int,
        default=None,
        help="loader.max_len for every model (default: recipes')",
    )
    parser.add_argument(
        "--train-samples",
        type=int,
        default=None,
        help="train every model on the same seeded subsample of this many train samples "
        "(valid and test whole; pipelines.data.subsample); default: all",
    )
    parser.add_argument(
        "--subsample-seed",
        type=int,
        default=0,
        help="seed of the --train-samples draw (default 0; the same for every model and seed)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an extra config override for every run (repeatable), e.g. loader.batch_size=256",
    )
    parser.add_argument(
        "--budget-minutes",
        type=float,
        default=None,
        help="no run starts after this many minutes; the rest are listed as not run",
    )
    parser.add_argument(
        "--timeout", type=float, default=None, help="seconds per run (default: none)"
    )
    parser.add_argument("--smoke", action="store_true", help="tiny synthetic run (< 1 minute)")
    args = parse_cli(parser, argv)
    if args.smoke:
        if args.dataset not in (None, "synthetic-smoke"):
            parser.error("--smoke uses the synthetic-smoke dataset")
        defaults = ("synthetic-smoke", SMOKE_MODELS, "0", str(SMOKE_LR), 1)
    else:
        defaults = ("ml-1m-u2999", "all", "0,1,2", "0.002,0.004", 2)
    for name, value in zip(("dataset", "models", "seeds", "lrs", "epochs"), defaults):
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.epochs < 1:
        parser.error("--epochs must be >= 1")
    if args.max_len is not None and args.max_len < 1:
        parser.error("--max-len must be >= 1")
    if args.train_samples is not None and args.train_samples < 1:
        parser.error("--train-samples must be >= 1")
    if args.budget_minutes is not None and args.budget_minutes <= 0:
        parser.error("--budget-minutes must be > 0")
    return args


def select_dataset(args: argparse.Namespace) -> DatasetSpec:
    """The dataset spec of ``--dataset``, renamed ``<name>-L<max_len>`` under ``--max-len`` and
    ``<name>-n<rows>`` (``-s<seed>`` unless 0) under ``--train-samples``."""
    spec = resolve_dataset(args.dataset)
    if args.max_len is not None:
        spec = dataclasses.replace(spec, name=f"{spec.name}-L{args.max_len}")
    if args.train_samples is not None:
        seed = f"-s{args.subsample_seed}" if args.subsample_seed else ""
        spec = dataclasses.replace(spec, name=f"{spec.name}-n{args.train_samples}{seed}")
    return spec


def train_subsample(root: Path, data_dir: Path, rows: int, seed: int) -> tuple[Path, dict]:
    """The prepared copy of ``root`` whose train split is the seeded ``rows``-sample subsample
    (made once under ``data_dir``, reused after) and its description for the results file."""
    from pipelines.data.prepared import PreparedDataset
    from pipelines.data.subsample import derive_train_subsample

    out = derive_train_subsample(root, data_dir / f"{root.name}-train{rows}-s{seed}", rows, seed)
    drawn = PreparedDataset.open(out).manifest["subsample"]  # what the copy records of its draw
    return out, {
        "source": display_path(root),
        "train_rows": drawn["train_rows"],
        "source_train_rows": drawn["source_train_rows"],
        "seed": seed,
        "rule": "every model and seed trains on the same seeded subsample of the train "
        "samples (numpy default_rng(seed).choice, row order kept); valid and test whole",
    }


def models_for(
    spec: DatasetSpec, root: Path, models: list[str], explicit: bool
) -> tuple[list[str], dict[str, str]]:
    """The models that can run on ``root`` and ``{left-out model: reason}``.

    A dataset without item text cannot give content-cluster groups or content embeddings; the
    default model list leaves those variants out (and says so), an explicit ``--models`` naming
    one is an error. The synthetic smoke data stands in latent groups and random content.
    """
    if spec.synthetic or has_item_text(root):
        return models, {}
    needs = [m for m in models if VARIANTS[m].groups or VARIANTS[m].content]
    reason = f"{root / 'manifest.json'} names no item text fields (content groups/embeddings)"
    if needs and explicit:
        raise SystemExit(f"{', '.join(needs)} cannot run: {reason}")
    return [m for m in models if m not in needs], dict.fromkeys(needs, reason)


def write_reports(results: dict[str, Any], results_dir: Path, dataset: str) -> Path:
    """``quality_<dataset>.md`` and ``.png`` from the results; returns the markdown path."""
    markdown = results_dir / f"quality_{dataset}.md"
    write_text_atomic(markdown, render_quality_markdown(results))
    plot_quality(results, results_dir / f"quality_{dataset}.png")
    return markdown


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 when every planned run is ok, 1 otherwise."""
    args = parse_args(argv)
    models = parse_models(args.models)  # exits with the known names on a typo
    spec = select_dataset(args)
    seeds = _parse_list(args.seeds, int)
    search_seeds = seeds if args.lr_search_seeds is None else _parse_list(args.lr_search_seeds, int)
    if not set(search_seeds) <= set(seeds):
        raise SystemExit(f"--lr-search-seeds {search_seeds} must be among --seeds {seeds}")
    lrs = _parse_list(args.lrs, float)
    data_dir = args.data_dir.resolve()
    results_path = args.results_dir.resolve() / f"quality_{spec.name}.json"

    root = ensure_prepared(spec, data_dir)
    models, left_out = models_for(spec, root, models, explicit=args.models != "all")
    for name, reason in left_out.items():
        print(f"{name}: left out: {reason}")
    groups = content = raw_content = None
    extra_info: dict[str, Any] = {}
    if any(VARIANTS[m].groups for m in models):
        groups, extra_info["groups"] = ensure_groups(spec, root, args.k)
    if any(VARIANTS[m].content and not VARIANTS[m].raw_content for m in models):
        content, extra_info["content"] = ensure_content(spec, root)
    if any(VARIANTS[m].raw_content for m in models):
        raw_content, extra_info["raw_content"] = ensure_raw_content(spec, root)
    full_root = root
    if args.train_samples is not None:  # content comes from the whole dataset, as always
        root, extra_info["train_subsample"] = train_subsample(
            full_root, data_dir, args.train_samples, args.subsample_seed
        )
    extra = [*BENCH_OVERRIDES, f"train.epochs={args.epochs}"]
    if args.max_len is not None:
        extra.append(f"loader.max_len={args.max_len}")
    extra += args.overrides
    if args.smoke:
        extra += SMOKE_OVERRIDES
    try:
        plan = plan_runs(
            spec,
            root,
            models,
            lrs,
            seeds,
            extra,
            args.runs_dir.resolve(),
            groups,
            content,
            raw_content,
        )
    except (ValueError, FileNotFoundError) as err:  # ConfigError is a ValueError
        raise SystemExit(f"cannot build the benchmark's configs: {err}") from err
    shared, differs = shared_settings(plan)
    settings = {
        "mode": "smoke" if args.smoke else "full",
        "smoke": args.smoke,
        "models": models,
        "seeds": seeds,
        "lrs": lrs,
        "lr_search_seeds": search_seeds,
        "lr_key": LR_KEY,
        "epochs": args.epochs,
        "k": args.k,
        "left_out": left_out,
        "train_samples": args.train_samples,
        "budget_minutes": args.budget_minutes,
        "recipe_prefix": spec.recipe_prefix,
        "extra_overrides": extra,
        "shared": shared,
        "differs": differs,
    }

    def start(data: dict[str, Any]) -> None:
        merged = merge_settings(data.get("settings") or {}, settings)
        data.update(benchmark="quality", dataset=spec.name, smoke=args.smoke, settings=merged)
        data.update(extra_info)
        data.update(dataset_facts=dataset_facts(root), floor=floor_metrics(root))
        if root != full_root:  # the floor above saw the models' samples; this one all of train
            data.update(floor_full_train=floor_metrics(full_root))
        data.update(repeat_count=repeat_count_metrics(root))
        data["environment"] = environment()
        data.setdefault("runs", {})

    results = update_json(results_path, start)
    counts = {"trained": 0, "skipped": 0, "failed": 0, "not_run_budget": 0}
    began = time.monotonic()
    over_budget: list[str] = []

    def budget_spent() -> bool:
        if args.budget_minutes is None:
            return False
        return time.monotonic() - began >= 60.0 * args.budget_minutes

    def run_stage(stage: list[PlannedRun], label: str, results: dict[str, Any]) -> dict[str, Any]:
        bar = progress(stage, desc=f"quality {spec.name}{label}", unit="run")
        for run in bar:
            bar.set_postfix_str(f"{run.variant.name} {run.key}")
            previous = results.get("runs", {}).get(run.variant.name, {}).get(run.key)
            if previous and previous.get("status") == "ok" and previous.get("hash") == run.hash:
                counts["skipped"] += 1
                if refresh_selected_valid(previous):

                    def refresh(data: dict[str, Any], run: PlannedRun = run, rec=previous) -> None:
                        data["runs"][run.variant.name][run.key] = rec

                    results = update_json(results_path, refresh)
                continue
            if budget_spent():
                counts["not_run_budget"] += 1
                over_budget.append(f"{run.variant.name} {run.key}")
                continue
            record = train_one(run, args.timeout)
            record["finished"] = utc_now()
            counts["trained" if record["status"] == "ok" else "failed"] += 1
            if record["status"] != "ok":
                bar.write(
                    f"FAILED {run.variant.name} {run.key}: {record['error']} ({record['log']})"
                )

            def store(data: dict[str, Any], run: PlannedRun = run, record: dict = record) -> None:
                data.setdefault("runs", {}).setdefault(run.variant.name, {})[run.key] = record

            results = update_json(results_path, store)
        bar.close()
        return results

    search = [run for run in plan if run.seed in search_seeds]
    results = run_stage(search, "", results)
    rest = [run for run in plan if run.seed not in search_seeds]
    if rest:  # second stage: the other seeds at each model's chosen rate only
        confirm, missing = runs_at_chosen_rates(rest, results)
        for name in missing:
            print(f"{name}: no successful run to choose a learning rate from; not run")
        results = run_stage(confirm, " (chosen rates)", results)
        plan = search + confirm

    def finish(data: dict[str, Any]) -> None:
        data["last_invocation"] = {
            **counts,
            "planned": len(plan),
            "not_run_over_budget": over_budget,
            "finished": utc_now(),
        }
        data["summary"] = summarize(data)

    results = update_json(results_path, finish)
    markdown = write_reports(results, results_path.parent, spec.name)
    print(render_quality_markdown(results))
    if over_budget:
        print(
            f"budget of {args.budget_minutes:g} min spent: {len(over_budget)} run(s) not started "
            f"({', '.join(over_budget)}); rerun the same command to continue them"
        )
    print(
        f"{counts['trained']} trained, {counts['skipped']} skipped (already recorded), "
        f"{counts['failed']} failed -> {results_path}, {markdown}"
    )
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
