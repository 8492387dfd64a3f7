"""The README's main job: prepare the bundled real data, train DMGIN and SIMHard, compare.

``python -m pipelines.main_job`` (what ``scripts/main.sh`` runs):

1. prepares ``movielens-1m-u2999`` from ../shared/data (a clone without it falls back to
   MovieLens-100k from the recbole wheel on PyPI, then to the synthetic generator) into
   ``data/main``, reusing an existing preparation of the same dataset;
2. scores the no-model floor (smoothed user + item label rate);
3. builds DMGIN's interest groups as the paper does: the item texts embedded
   (``pipelines.content.embed``, all-MiniLM-L6-v2 from its PyPI wheel, cached), then seeded
   K-means with K = 64 (``pipelines.content.cluster``) written to
   ``data/main/content/main_groups_k64.parquet``; a dataset without item text (the synthetic
   fallback) keeps category groups, and the output says so;
4. trains DMGIN and SIMHard with the same recipe (``recipes/configs/main_*.yaml``);
5. prints test AUC / GAUC / logloss of each beside the floor and writes
   ``runs/main/summary.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
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


#: K-means groups of the main job's DMGIN (the quality benchmark's default K)
CONTENT_K = 64


def content_groups(dataset: PreparedDataset, k: int = CONTENT_K) -> Path | None:
    """``item -> group`` parquet from K-means over the item text embeddings (made once).

    None when the dataset names no item text fields. Embeddings are reused from
    ``DIR/content/embeddings.npy`` when present (``pipelines.content.embed`` keeps a cache).
    """
    if not dataset.manifest.get("text_fields"):
        return None
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.content.cluster import cluster_items
    from pipelines.content.embed import content_dir, embed_dataset, load_item_matrix

    path = content_dir(dataset.root) / f"main_groups_k{k}.parquet"
    if path.is_file():
        return path
    start = time.perf_counter()
    if not (content_dir(dataset.root) / "embeddings.npy").is_file():
        print(f"[main] embedding the item texts of {dataset.root}", flush=True)
        embed_dataset(dataset.root)
    item_index = dataset.read_items().column("item").to_numpy().astype(np.int64)
    vectors = load_item_matrix(dataset.root, "embeddings")[item_index]
    events = dataset.read_events()
    result = cluster_items(item_index, vectors, k, 0, events.offsets, events.item)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(pa.table({"item": item_index, "group": result.groups}), tmp)
    tmp.replace(path)
    print(
        f"[main] {k} content groups over {len(item_index):,} items "
        f"(largest {result.report['max_size']}) in {time.perf_counter() - start:.0f} s -> {path}",
        flush=True,
    )
    return path


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
        overrides = [f"data.dataset={args.data_dir}", f"train.output_dir={output}"]
        label = model
        if model == "DMGIN":
            groups = content_groups(dataset)
            if groups is None:
                print(f"[main] {name} has no item text: DMGIN groups by category", flush=True)
                overrides.append("model.group_key=category")
                label = "DMGIN (category)"
            else:
                overrides.append(f"data.groups={groups}")
                label = f"DMGIN (content K={CONTENT_K})"
        config = load_config(REPO_ROOT / MODELS[model], [*overrides, *args.overrides])
        print(f"[main] training {label} on {name} -> {output}", flush=True)
        summary = train(config)
        rows.append((label, summary["test"], summary["train_seconds"]))
    print(f"\nTest split of {name} ({dataset.manifest['splits']['test']['rows']:,} samples)")
    print(f"{'model':<22}{'AUC':>8}{'GAUC':>8}{'logloss':>9}{'train s':>9}")
    for label, metrics, seconds in rows:
        secs = f"{seconds:9.0f}" if seconds is not None else f"{'-':>9}"
        print(
            f"{label:<22}{metrics['auc']:8.4f}{metrics.get('gauc', float('nan')):8.4f}"
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
