"""CTR metrics: AUC, GAUC (per-user AUC weighted by impressions) and logloss.

AUC comes from torchmetrics' ``binary_auroc``. GAUC needs one AUC per user; a Python loop over
60k users is too slow, so :func:`grouped_auc` computes every user's Mann-Whitney statistic at
once from tie-averaged ranks within each user (one sort). :func:`grouped_auc_reference` is the
obvious loop over users with ``sklearn.metrics.roc_auc_score``; tests compare the two.
"""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics.functional.classification import binary_auroc

_EPS = 1e-7


def _as_numpy(values: np.ndarray | torch.Tensor | list, dtype: type) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=dtype)


def grouped_auc(
    labels: np.ndarray, scores: np.ndarray, groups: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-group ROC AUC, vectorized.

    Args:
        labels: ``[n]`` in {0, 1}.
        scores: ``[n]`` predictions (any monotone score).
        groups: ``[n]`` int group (user) id.

    Returns:
        ``(group_ids [g], auc [g], impressions [g])`` for the groups that have both classes.
    """
    labels = labels.astype(np.float64)
    order = np.lexsort((scores, groups))
    g, s, y = groups[order], scores[order], labels[order]
    n = g.shape[0]
    if n == 0:
        empty = np.zeros(0)
        return empty.astype(np.int64), empty, empty
    # tie-averaged ranks of scores within each group: runs of equal (group, score)
    new_run = np.ones(n, dtype=bool)
    new_run[1:] = (g[1:] != g[:-1]) | (s[1:] != s[:-1])
    run_id = np.cumsum(new_run) - 1
    run_start = np.flatnonzero(new_run)
    run_end = np.append(run_start[1:], n)  # exclusive
    group_start_of_row = np.maximum.accumulate(
        np.where(np.r_[True, g[1:] != g[:-1]], np.arange(n), 0)
    )
    # 1-based rank within the group, averaged over the tie run
    avg_rank = (run_start + run_end - 1) / 2.0 - group_start_of_row[run_start] + 1.0
    rank = avg_rank[run_id]
    uniq, first = np.unique(g, return_index=True)
    counts = np.diff(np.append(first, n))
    positives = np.add.reduceat(y, first)
    rank_sum_pos = np.add.reduceat(rank * y, first)
    negatives = counts - positives
    valid = (positives > 0) & (negatives > 0)
    u_stat = rank_sum_pos[valid] - positives[valid] * (positives[valid] + 1) / 2.0
    auc = u_stat / (positives[valid] * negatives[valid])
    return uniq[valid], auc, counts[valid].astype(np.float64)


def grouped_auc_reference(
    labels: np.ndarray, scores: np.ndarray, groups: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Loop over groups with sklearn; same contract as :func:`grouped_auc`."""
    from sklearn.metrics import roc_auc_score

    ids, aucs, sizes = [], [], []
    for group in np.unique(groups):
        mask = groups == group
        y = labels[mask]
        if y.min() == y.max():
            continue
        ids.append(group)
        aucs.append(roc_auc_score(y, scores[mask]))
        sizes.append(mask.sum())
    return np.asarray(ids, np.int64), np.asarray(aucs, np.float64), np.asarray(sizes, np.float64)


def compute_metrics(
    labels: np.ndarray | torch.Tensor,
    predictions: np.ndarray | torch.Tensor,
    weights: np.ndarray | torch.Tensor | None = None,
    user_ids: np.ndarray | torch.Tensor | None = None,
) -> dict[str, float]:
    """AUC, GAUC, logloss of probability ``predictions`` against 0/1 ``labels``.

    Rows with weight 0 (padding added to keep ranks' batch counts equal) are ignored; other
    weights must be 1. GAUC averages per-user AUC weighted by each user's impressions over the
    users that have both classes; ``gauc_coverage`` is the fraction of impressions it covers.
    """
    y = _as_numpy(labels, np.float64).reshape(-1)
    p = _as_numpy(predictions, np.float64).reshape(-1)
    if y.shape != p.shape:
        raise ValueError(f"labels {y.shape} and predictions {p.shape} differ in shape")
    keep = np.ones_like(y, dtype=bool)
    if weights is not None:
        keep = _as_numpy(weights, np.float64).reshape(-1) > 0
    y, p = y[keep], p[keep]
    if y.size == 0:
        raise ValueError("no rows with positive weight to evaluate")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("labels must be 0 or 1")
    result: dict[str, float] = {"count": float(y.size), "positive_rate": float(y.mean())}
    if 0 < y.sum() < y.size:
        result["auc"] = float(binary_auroc(torch.from_numpy(p), torch.from_numpy(y).long()))
    else:
        result["auc"] = float("nan")
    clipped = np.clip(p, _EPS, 1 - _EPS)
    result["logloss"] = float(-np.mean(y * np.log(clipped) + (1 - y) * np.log(1 - clipped)))
    if user_ids is not None:
        users = _as_numpy(user_ids, np.int64).reshape(-1)[keep]
        _, aucs, sizes = grouped_auc(y, p, users)
        if sizes.sum() > 0:
            result["gauc"] = float(np.sum(aucs * sizes) / np.sum(sizes))
            result["gauc_coverage"] = float(sizes.sum() / y.size)
        else:
            result["gauc"] = float("nan")
            result["gauc_coverage"] = 0.0
    return result
