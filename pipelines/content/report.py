"""Balance and compression diagnostics for interest groups (numbers + a PNG).

* balance: cluster sizes (histogram, max / median / min, empty clusters, share of items held by
  the largest 1% of clusters);
* compression on a dataset: per user, distinct groups touched vs history length. The headline
  ``ratio_of_medians`` = median distinct groups per user / median history length (DMGIN's G vs
  L); ``ratio_of_means`` and ``mean_user_ratio`` are reported too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def balance_report(groups: np.ndarray, k: int, bins: int = 20) -> dict:
    """``groups [n]`` in [1, K] -> size statistics (every value a plain int/float/list).

    Example:
        >>> balance_report(np.array([1, 1, 2]), 3)["empty_clusters"]
        1
    """
    sizes = np.bincount(np.asarray(groups, np.int64), minlength=k + 1)[1 : k + 1]
    nonempty = sizes[sizes > 0]
    counts, edges = np.histogram(sizes, bins=min(bins, max(1, int(sizes.max(initial=0)))))
    top = max(1, int(np.ceil(0.01 * k)))
    return {
        "sizes": sizes.tolist(),
        "max_size": int(sizes.max(initial=0)),
        "median_size": float(np.median(sizes)) if k else 0.0,
        "min_nonempty_size": int(nonempty.min(initial=0)),
        "empty_clusters": int((sizes == 0).sum()),
        "top1pct_item_share": float(np.sort(sizes)[::-1][:top].sum() / max(1, sizes.sum())),
        "size_histogram": {"counts": counts.tolist(), "edges": edges.tolist()},
    }


def compression_stats(offsets: np.ndarray, event_groups: np.ndarray) -> dict:
    """Distinct groups per user vs history length over a CSR event log.

    Args:
        offsets: ``[U + 2]`` CSR offsets (``EventLog.offsets``); users with no events are skipped.
        event_groups: ``[E]`` group of every event.
    """
    offsets = np.asarray(offsets, np.int64)
    lengths = np.diff(offsets)
    users = np.flatnonzero(lengths > 0)
    if users.size == 0:
        return {
            "users": 0,
            "median_groups": 0.0,
            "median_length": 0.0,
            "ratio_of_medians": 0.0,
            "mean_groups": 0.0,
            "mean_length": 0.0,
            "ratio_of_means": 0.0,
            "mean_user_ratio": 0.0,
        }
    user_of_event = np.repeat(np.arange(lengths.size), lengths)
    pairs = np.unique(user_of_event * (int(event_groups.max()) + 1) + event_groups)
    distinct = np.bincount(pairs // (int(event_groups.max()) + 1), minlength=lengths.size)
    g, n = distinct[users].astype(np.float64), lengths[users].astype(np.float64)
    return {
        "users": int(users.size),
        "median_groups": float(np.median(g)),
        "median_length": float(np.median(n)),
        "ratio_of_medians": float(np.median(g) / np.median(n)),
        "mean_groups": float(g.mean()),
        "mean_length": float(n.mean()),
        "ratio_of_means": float(g.mean() / n.mean()),
        "mean_user_ratio": float((g / n).mean()),
    }


def compression_stats_reference(offsets: np.ndarray, event_groups: np.ndarray) -> dict:
    """Per-user loop twin of :func:`compression_stats` (headline fields only)."""
    g, n = [], []
    for u in range(len(offsets) - 1):
        rows = event_groups[offsets[u] : offsets[u + 1]]
        if rows.size:
            g.append(len(set(rows.tolist())))
            n.append(rows.size)
    return {
        "median_groups": float(np.median(g)),
        "median_length": float(np.median(n)),
        "ratio_of_medians": float(np.median(g) / np.median(n)),
        "ratio_of_means": float(np.mean(g) / np.mean(n)),
    }


def plot_report(
    embeddings: np.ndarray, groups: np.ndarray, report: dict, path: Path, max_points: int = 5000
) -> None:
    """PNG: cluster-size histogram (left) and a 2-D PCA projection colored by group (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    sizes = np.asarray(report["sizes"])
    left.hist(sizes, bins=min(40, max(1, int(sizes.max(initial=1)))), color="tab:blue")
    left.set_xlabel("items per group")
    left.set_ylabel("groups")
    left.set_title(
        f"K={len(sizes)}: max {report['max_size']}, median {report['median_size']:g}, "
        f"empty {report['empty_clusters']}"
    )
    rng = np.random.default_rng(0)
    pick = rng.permutation(len(groups))[:max_points]
    if embeddings.shape[0] >= 2 and embeddings.shape[1] >= 2:
        xy = PCA(n_components=2, random_state=0).fit_transform(embeddings[pick])
        right.scatter(xy[:, 0], xy[:, 1], c=groups[pick] % 20, cmap="tab20", s=4, alpha=0.7)
    right.set_title("PCA of item embeddings, colored by group")
    right.set_xticks([])
    right.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=90)
    plt.close(fig)
