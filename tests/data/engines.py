"""Shared by the engine tests (pandas vs DuckDB vs Spark): a random log with the awkward parts
(ties in ts, repeated items, named behaviors, a numeric field, users in shuffled order) and the
array-for-array comparison of two prepared tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def synthetic_log(rng: np.random.Generator, n: int) -> pd.DataFrame:
    users = rng.permutation(60)[rng.integers(0, 60, n)]
    return pd.DataFrame(
        {
            "uid": [f"u{u}" for u in users],
            "iid": rng.integers(0, 90, n).astype(str),
            "t": rng.integers(0, 40, n) * 10,  # many ties per user
            "act": rng.choice(["view", "cart", "buy"], n),
            "dwell": np.round(rng.gamma(2.0, 1.3, n), 3),
            "score": rng.integers(0, 6, n),
            "cat": rng.choice(["a", "b", "c", "d"], n),
        }
    )


def assert_same_table(left_path: Path, right_path: Path, where: str) -> None:
    """Same columns in the same order, same rows, every array equal in values and dtype."""
    left, right = pd.read_parquet(left_path), pd.read_parquet(right_path)
    assert list(left.columns) == list(right.columns), where
    assert len(left) == len(right), where
    for column in left.columns:
        assert left[column].dtype == right[column].dtype, f"{where}:{column}"
        np.testing.assert_array_equal(
            left[column].to_numpy(), right[column].to_numpy(), err_msg=f"{where}:{column}"
        )
