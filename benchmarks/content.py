"""Content pipeline benchmark: embed + cluster time, compression ratio per K, C-SFT recall.

For each prepared dataset directory (made by ``python -m pipelines.prepare``; with ``--prepare``
this script runs it for the default datasets ml-1m-u2999 and instacart-u593 under ``--work``):

* embed time with an empty cache (all-MiniLM-L6-v2 on CPU) and with a warm cache,
* K-means time, balance and compression ratio (median distinct groups per user / median
  history length) for every K in ``--ks``,
* C-SFT: held-out recall@10/50 of the next positive, raw vs aligned embeddings.

Timings on a shared 2-core machine are noisy. Results: ``benchmarks/results/content.json``.

Usage::

    python -m benchmarks.content --dataset data/ml1m --dataset data/instacart [--ks 16,64,256]
    python -m benchmarks.content --prepare --work /tmp/bench
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipelines.console import parse_cli
from pipelines.content.cluster import run as cluster_run
from pipelines.content.csft import CSFTConfig, train_csft
from pipelines.content.embed import embed_dataset
from pipelines.data.prepared import PreparedDataset

DEFAULT_DATASETS = ("movielens-1m-u2999", "instacart-u593")
RESULTS = Path(__file__).resolve().parent / "results" / "content.json"


def bench_dataset(root: Path, ks: list[int], csft_steps: int) -> dict:
    ds = PreparedDataset.open(root)
    out: dict = {"dataset": str(root), "items": int(ds.read_items().num_rows)}
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = embed_dataset(root, cache_path=Path(tmp) / "cache.parquet")
        out["embed_seconds_cold"] = time.perf_counter() - start
        out["embed_texts_encoded"] = result.encoded
        start = time.perf_counter()
        embed_dataset(root, cache_path=Path(tmp) / "cache.parquet")
        out["embed_seconds_cached"] = time.perf_counter() - start
    out["clusters"] = []
    for k in ks:
        if k > out["items"]:
            continue
        start = time.perf_counter()
        clustering = cluster_run(root, k=k, seed=0, plot=False)
        r = clustering.report
        out["clusters"].append(
            {
                "k": k,
                "seconds": time.perf_counter() - start,
                "max_size": r["max_size"],
                "median_size": r["median_size"],
                "empty_clusters": r["empty_clusters"],
                "top1pct_item_share": r["top1pct_item_share"],
                **{f"compression_{key}": value for key, value in r["compression"].items()},
            }
        )
        print(
            f"  K={k}: {out['clusters'][-1]['seconds']:.1f}s "
            f"ratio={r['compression']['ratio_of_medians']:.3f}",
            flush=True,
        )
    start = time.perf_counter()
    report = train_csft(
        root, CSFTConfig(epochs=1, max_steps=csft_steps, batch_size=256, queue_size=1024)
    ).report
    out["csft"] = {
        "seconds": time.perf_counter() - start,
        "steps": report["steps"],
        "train_pairs": report["train_pairs"],
        "heldout_pairs": report["heldout_pairs"],
        "loss_first": report["loss_first"],
        "loss_last": report["loss_last"],
        "raw": report["raw"],
        "aligned": report["aligned"],
    }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", action="append", default=[], help="prepared dataset dir")
    parser.add_argument("--prepare", action="store_true", help="run pipelines.prepare first")
    parser.add_argument("--work", type=Path, default=Path("/tmp/lifelongrec-content-bench"))
    parser.add_argument("--ks", default="16,64,256,1024")
    parser.add_argument("--csft-steps", type=int, default=600)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parse_cli(parser, argv)
    roots = [Path(d) for d in args.dataset]
    if args.prepare:
        for name in DEFAULT_DATASETS:
            target = args.work / name
            if not (target / "manifest.json").is_file():
                subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "pipelines.prepare",
                        "--dataset",
                        name,
                        "--out",
                        str(target),
                    ],
                    check=True,
                )
            roots.append(target)
    if not roots:
        parser.error("give --dataset DIR (repeatable) or --prepare")
    ks = [int(k) for k in args.ks.split(",")]
    results = {"note": "CPU, 2 shared cores: timings are noisy", "datasets": []}
    for root in roots:
        print(f"{root}:", flush=True)
        results["datasets"].append(bench_dataset(root, ks, args.csft_steps))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    tmp.replace(args.out)
    print(json.dumps(results, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
