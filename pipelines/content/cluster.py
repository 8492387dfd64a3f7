"""Interest groups (DMGIN's IDECM): seeded K-means over item content embeddings.

Writes, under ``DIR/content/``:

* ``groups.parquet``: ``item`` int64, ``group`` int64 in [1, K] (0 is reserved for padding /
  unknown and never assigned),
* ``centroids.npy``: ``[K, d]`` float32, row ``g - 1`` is the centroid of group ``g``,
* ``cluster_report.json`` / ``cluster_report.png``: balance and compression (see
  :mod:`pipelines.content.report`).

Every item (and any later, unseen item) is assigned to its nearest centroid by
:func:`assign_groups`, so the table is consistent with the centroids by construction.
K comes from ``--k`` or from ``--target-ratio R``: bisection on K until the compression ratio
(median distinct groups per user / median history length, on ``events.parquet``) reaches R.

Usage::

    python -m pipelines.content.cluster --dataset DIR --k 64 [--embeddings raw|aligned]
    python -m pipelines.content.cluster --dataset DIR --target-ratio 0.3
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.cluster import KMeans, MiniBatchKMeans

from pipelines.console import parse_cli, progress
from pipelines.content.embed import content_dir, load_item_matrix, write_files_atomically
from pipelines.content.report import balance_report, compression_stats, plot_report
from pipelines.data.prepared import DataError, PreparedDataset

#: above this many items, MiniBatchKMeans replaces exact Lloyd K-means
MINIBATCH_ABOVE = 200_000


def fit_centroids(embeddings: np.ndarray, k: int, seed: int = 0, max_iter: int = 100) -> np.ndarray:
    """Seeded K-means (k-means++ init) -> ``[k, d]`` float32 centroids; deterministic for a seed.

    Example:
        >>> x = np.random.default_rng(0).normal(size=(100, 8)).astype(np.float32)
        >>> fit_centroids(x, 5, seed=0).shape
        (5, 8)
    """
    n = embeddings.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"K must be in [1, {n}] (number of items), got {k}")
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    if n > MINIBATCH_ABOVE:
        model = MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=3, batch_size=4096)
    else:
        model = KMeans(n_clusters=k, random_state=seed, n_init=1, max_iter=max_iter)
    model.fit(x)
    return model.cluster_centers_.astype(np.float32)


def assign_groups(embeddings: np.ndarray, centroids: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """``[n, d], [K, d] -> [n]`` int64 group in [1, K] = 1 + index of the nearest centroid
    (Euclidean; ties -> lowest index). Works for items never seen by the fit.

    Example:
        >>> assign_groups(np.array([[0.0, 1.0]]), np.array([[1.0, 0.0], [0.0, 1.0]]))
        array([2])
    """
    x = np.asarray(embeddings, dtype=np.float32)
    c = np.asarray(centroids, dtype=np.float32)
    c_sq = (c * c).sum(axis=1)
    out = np.empty(x.shape[0], dtype=np.int64)
    for start in range(0, x.shape[0], chunk):
        block = x[start : start + chunk]
        # ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2; ||x||^2 is constant per row
        dist = c_sq[None, :] - 2.0 * block @ c.T
        out[start : start + chunk] = dist.argmin(axis=1) + 1
    return out


def assign_groups_reference(embeddings: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Brute-force twin of :func:`assign_groups` (float64 full distance matrix)."""
    x = np.asarray(embeddings, dtype=np.float64)
    c = np.asarray(centroids, dtype=np.float64)
    dist = ((x[:, None, :] - c[None, :, :]) ** 2).sum(axis=2)
    return dist.argmin(axis=1).astype(np.int64) + 1


@dataclass
class Clustering:
    item_index: np.ndarray  # [n] int64
    groups: np.ndarray  # [n] int64 in [1, K]
    centroids: np.ndarray  # [K, d]
    report: dict


def cluster_items(
    item_index: np.ndarray,
    embeddings: np.ndarray,
    k: int,
    seed: int = 0,
    events_offsets: np.ndarray | None = None,
    events_item: np.ndarray | None = None,
) -> Clustering:
    """K-means over ``embeddings [n, d]`` (row j = item ``item_index[j]``) + balance report."""
    centroids = fit_centroids(embeddings, k, seed)
    groups = assign_groups(embeddings, centroids)
    report = balance_report(groups, k)
    if events_offsets is not None and events_item is not None:
        table = np.zeros(
            int(max(item_index.max(initial=0), events_item.max(initial=0))) + 1, np.int64
        )
        table[item_index] = groups
        report["compression"] = compression_stats(events_offsets, table[events_item])
    report.update({"k": k, "seed": seed, "items": int(item_index.shape[0])})
    return Clustering(item_index=item_index, groups=groups, centroids=centroids, report=report)


def search_k_for_ratio(
    embeddings: np.ndarray,
    item_index: np.ndarray,
    offsets: np.ndarray,
    events_item: np.ndarray,
    target_ratio: float,
    seed: int = 0,
    max_steps: int = 12,
) -> tuple[int, list[dict]]:
    """Bisection on K (the ratio grows with K) for compression ratio ~= ``target_ratio``.

    Returns ``(K, trace)`` where trace lists ``{"k", "ratio"}`` of every K tried; K is the
    tried value whose ratio is closest to the target.
    """
    if not 0.0 < target_ratio <= 1.0:
        raise ValueError(f"target ratio must be in (0, 1], got {target_ratio}")
    table = np.zeros(int(max(item_index.max(), events_item.max())) + 1, np.int64)
    trace: list[dict] = []

    def ratio_at(k: int) -> float:
        table[item_index] = assign_groups(embeddings, fit_centroids(embeddings, k, seed))
        value = compression_stats(offsets, table[events_item])["ratio_of_medians"]
        trace.append({"k": k, "ratio": value})
        return value

    low, high = 1, embeddings.shape[0]
    for _ in progress(range(max_steps), desc="search K", unit="fit"):
        if high - low <= 1:
            break
        mid = int(round(np.sqrt(low * high)))  # bisection in log K
        mid = min(max(mid, low + 1), high - 1)
        if ratio_at(mid) < target_ratio:
            low = mid
        else:
            high = mid
    best = min(trace, key=lambda t: abs(t["ratio"] - target_ratio)) if trace else {"k": high}
    return int(best["k"]), trace


def run(
    dataset: str | os.PathLike[str],
    k: int | None = None,
    target_ratio: float | None = None,
    embeddings: str = "raw",
    seed: int = 0,
    plot: bool = True,
) -> Clustering:
    """The CLI's work: fit, assign, report and write ``DIR/content/groups.parquet`` etc."""
    if (k is None) == (target_ratio is None):
        raise ValueError("give exactly one of --k and --target-ratio")
    if embeddings not in ("raw", "aligned"):
        raise ValueError(f"--embeddings must be raw or aligned, got {embeddings!r}")
    ds = PreparedDataset.open(dataset)
    matrix = load_item_matrix(dataset, "embeddings" if embeddings == "raw" else "aligned")
    item_index = ds.read_items().column("item").to_numpy().astype(np.int64)
    if item_index.max(initial=0) >= matrix.shape[0]:
        raise DataError(
            content_dir(dataset),
            None,
            f"embedding matrix has {matrix.shape[0]} rows, items.parquet "
            f"needs index {int(item_index.max())}; rerun the embed step",
        )
    vectors = matrix[item_index]
    events = ds.read_events()
    trace: list[dict] = []
    if k is None:
        k, trace = search_k_for_ratio(
            vectors, item_index, events.offsets, events.item, float(target_ratio), seed
        )
    result = cluster_items(item_index, vectors, k, seed, events.offsets, events.item)
    result.report.update(
        {"embeddings": embeddings, "target_ratio": target_ratio, "k_search": trace}
    )
    groups_table = pa.table({"item": item_index, "group": result.groups})
    report_json = json.dumps(result.report, indent=2, sort_keys=True) + "\n"
    writers = {
        "groups.parquet": lambda tmp: pq.write_table(groups_table, tmp),
        "centroids.npy": lambda tmp: np.save(tmp, result.centroids),
        "cluster_report.json": lambda tmp: tmp.write_text(report_json),
    }
    if plot:
        writers["cluster_report.png"] = lambda tmp: plot_report(
            vectors, result.groups, result.report, tmp
        )
    write_files_atomically(content_dir(dataset), writers)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="K-means interest groups over item content.")
    parser.add_argument("--dataset", required=True, help="prepared dataset directory")
    choice = parser.add_mutually_exclusive_group(required=True)
    choice.add_argument("--k", type=int, help="number of groups")
    choice.add_argument("--target-ratio", type=float, help="wanted compression ratio")
    parser.add_argument("--embeddings", default="raw", choices=["raw", "aligned"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-plot", action="store_true")
    args = parse_cli(parser, argv)
    try:
        result = run(
            args.dataset,
            args.k,
            args.target_ratio,
            args.embeddings,
            args.seed,
            plot=not args.no_plot,
        )
    except (DataError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    r = result.report
    print(
        f"K={r['k']} items={r['items']} sizes max={r['max_size']} median={r['median_size']} "
        f"empty={r['empty_clusters']} top1%-share={r['top1pct_item_share']:.3f}"
    )
    if "compression" in r:
        c = r["compression"]
        print(
            f"groups/user median={c['median_groups']} length median={c['median_length']} "
            f"ratio={c['ratio_of_medians']:.4f} (mean {c['ratio_of_means']:.4f})"
        )
    print(f"-> {content_dir(args.dataset)}/groups.parquet")
    return 0


if __name__ == "__main__":
    sys.exit(main())
