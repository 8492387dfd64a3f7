"""Taobao UserBehavior adapters (ETA's protocol).

Events: pv / cart / fav / buy (behavior ids 1..4), category id only, no text. Samples: every
event is a positive (the real behavior at its ts) plus one negative at the same ts: an item drawn
uniformly from the same category's items in the file, different from the positive; when the
category has a single item, the negative is drawn uniformly from all items.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.data.build import RawLog
from pipelines.data.prepared import DataError
from pipelines.data.readers import id_column, read_table, timestamp_column

BEHAVIORS = ["pv", "cart", "fav", "buy"]


def same_category_negatives(
    positives: np.ndarray, category_of: pd.Series, rng: np.random.Generator
) -> np.ndarray:
    """One negative item per positive: same category when possible (vectorized)."""
    catalogue = category_of.index.to_numpy()
    cats = category_of.to_numpy()
    order = np.argsort(cats, kind="stable")
    sorted_items, sorted_cats = catalogue[order], cats[order]
    pos_index = pd.Index(catalogue).get_indexer(positives)
    pos_cat = cats[pos_index]
    start = np.searchsorted(sorted_cats, pos_cat, side="left")
    size = np.searchsorted(sorted_cats, pos_cat, side="right") - start
    # draw among the other size-1 items of the category: skip the positive's own slot
    position = np.empty_like(order)
    position[order] = np.arange(order.shape[0])
    slot_of_positive = position[pos_index] - start
    draw = (rng.random(positives.shape[0]) * np.maximum(size - 1, 1)).astype(np.int64)
    draw = draw + (draw >= slot_of_positive)
    negatives = sorted_items[start + np.minimum(draw, size - 1)]
    single = size <= 1
    if single.any():
        fallback = catalogue[rng.integers(0, catalogue.shape[0], int(single.sum()))]
        negatives = negatives.copy()
        negatives[single] = fallback
    return negatives


def read_taobao_file(path: Path, name: str, seed: int) -> RawLog:
    frame = read_table(path, header=False, names=["user", "item", "category", "behavior", "ts"])
    behavior = frame["behavior"].astype(str).str.strip()
    code = pd.Categorical(behavior, categories=BEHAVIORS).codes
    if (code < 0).any():
        row = int(np.flatnonzero(code < 0)[0])
        raise DataError(
            path, "behavior_type", f"row {row + 1}: {behavior.iloc[row]!r} not in {BEHAVIORS}"
        )
    ts = timestamp_column(frame, path, "ts")
    events = pd.DataFrame(
        {
            "user_raw": id_column(frame, path, "user"),
            "item_raw": id_column(frame, path, "item"),
            "ts": ts,
            "behavior": code.astype(np.int64) + 1,
        }
    )
    items = (
        pd.DataFrame(
            {"item_raw": events["item_raw"], "category_raw": frame["category"].astype(str)}
        )
        .drop_duplicates("item_raw")
        .reset_index(drop=True)
    )
    rng = np.random.default_rng(seed)
    negatives = same_category_negatives(
        events["item_raw"].to_numpy(), items.set_index("item_raw")["category_raw"], rng
    )
    samples = pd.concat(
        [
            events[["user_raw", "item_raw", "ts"]].assign(label=np.float32(1)),
            pd.DataFrame(
                {
                    "user_raw": events["user_raw"],
                    "item_raw": negatives,
                    "ts": ts,
                    "label": np.float32(0),
                }
            ),
        ],
        ignore_index=True,
    )
    return RawLog(
        name=name,
        events=events,
        items=items,
        samples=samples,
        behaviors=BEHAVIORS,
        source={"files": [str(path)]},
        label_rule="every event positive + one same-category sampled negative at the same ts (ETA protocol)",
        events_path=str(path),
        items_path=str(path),
    )


def read_taobao_tail10k(root: Path, seed: int = 0) -> RawLog:
    return read_taobao_file(
        root / "taobao-userbehavior" / "UserBehavior_tail10k_u114.csv", "taobao-tail10k", seed
    )


def read_taobao_slice(root: Path, seed: int = 0) -> RawLog:
    return read_taobao_file(
        root / "taobao-userbehavior" / "UserBehavior_slice.csv", "taobao-slice", seed
    )
