"""Metric code against sklearn on fixed and random predictions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import log_loss, roc_auc_score

from pipelines.evaluate.metrics import compute_metrics, grouped_auc, grouped_auc_reference


def _sklearn_gauc(y: np.ndarray, p: np.ndarray, users: np.ndarray) -> float:
    total, weight = 0.0, 0.0
    for u in np.unique(users):
        m = users == u
        if y[m].min() != y[m].max():
            total += roc_auc_score(y[m], p[m]) * m.sum()
            weight += m.sum()
    return total / weight


def test_fixed_predictions_match_sklearn() -> None:
    y = np.array([0, 1, 1, 0, 1, 0, 0, 1, 1, 0], dtype=float)
    p = np.array([0.1, 0.9, 0.4, 0.4, 0.8, 0.3, 0.7, 0.6, 0.2, 0.5])
    users = np.array([1, 1, 1, 2, 2, 2, 3, 3, 4, 4])
    m = compute_metrics(y, p, user_ids=users)
    assert m["auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-6)  # torchmetrics: float32
    assert m["logloss"] == pytest.approx(log_loss(y, p), abs=1e-9)
    assert m["gauc"] == pytest.approx(_sklearn_gauc(y, p, users), abs=1e-12)
    assert m["gauc_coverage"] == pytest.approx(1.0)


def test_weight_zero_rows_are_ignored() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200).astype(float)
    p = rng.random(200)
    users = rng.integers(0, 10, 200)
    w = np.ones(200)
    w[150:] = 0
    m = compute_metrics(y, p, weights=w, user_ids=users)
    ref = compute_metrics(y[:150], p[:150], user_ids=users[:150])
    assert m == ref
    assert m["count"] == 150


def test_single_class_users_are_skipped_and_coverage_reported() -> None:
    y = np.array([1, 1, 0, 1], dtype=float)
    p = np.array([0.2, 0.3, 0.4, 0.9])
    users = np.array([7, 7, 8, 8])
    m = compute_metrics(y, p, user_ids=users)
    assert m["gauc"] == pytest.approx(1.0)
    assert m["gauc_coverage"] == pytest.approx(0.5)


def test_bad_labels_raise() -> None:
    with pytest.raises(ValueError, match="0 or 1"):
        compute_metrics(np.array([0.0, 2.0]), np.array([0.1, 0.2]))


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 300),
    n_users=st.integers(1, 20),
    n_levels=st.integers(1, 8),
    seed=st.integers(0, 2**31 - 1),
)
def test_grouped_auc_matches_reference(n: int, n_users: int, n_levels: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n).astype(float)
    # few score levels -> many ties, which the rank averaging must handle
    p = rng.integers(0, n_levels, n) / max(n_levels, 1)
    users = rng.integers(0, n_users, n)
    ids, aucs, sizes = grouped_auc(y, p, users)
    ref_ids, ref_aucs, ref_sizes = grouped_auc_reference(y, p, users)
    np.testing.assert_array_equal(ids, ref_ids)
    np.testing.assert_allclose(aucs, ref_aucs, atol=1e-12)
    np.testing.assert_array_equal(sizes, ref_sizes)
