"""Instacart adapter: "will this product be in the user's next basket?".

Events: every purchase of the 593 users' prior orders. Clock (no absolute times in the data):
an order's ts = cumulative days_since_prior_order over the user's orders (first order = day 0)
* 86400 + order_hour_of_day * 3600; items inside a basket keep add_to_cart_order as their
original order. behavior = 1 (purchase); numeric fields: add_to_cart_order, reordered.
Category = aisle; side field: department; text: product name, aisle name, department name.
Samples: for each order n >= 2, every product of the order is a positive at the order's ts, and
each positive gets one negative: a product drawn uniformly from the same aisle among products in
the dataset, not in that basket (redrawn up to 20 times; a basket that holds its whole aisle
keeps the last draw out of the sample set).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.data.build import RawLog
from pipelines.data.readers import numeric_column, read_table, require_columns

COLUMNS = [
    "order_id",
    "user_id",
    "order_number",
    "order_hour_of_day",
    "days_since_prior_order",
    "product_id",
    "add_to_cart_order",
    "reordered",
]


def read_instacart(root: Path, seed: int = 0) -> RawLog:
    folder = root / "instacart-u593"
    orders_path = folder / "order_products_prior_sample.csv"
    orders = read_table(orders_path)
    require_columns(orders, orders_path, COLUMNS)
    products = read_table(folder / "products.csv")
    aisles = read_table(folder / "aisles.csv").set_index("aisle_id")["aisle"]
    departments = read_table(folder / "departments.csv").set_index("department_id")["department"]
    order_number = numeric_column(orders, orders_path, "order_number").astype(np.int64)
    hour = numeric_column(orders, orders_path, "order_hour_of_day")
    gap = numeric_column(orders, orders_path, "days_since_prior_order", allow_missing=True)
    cart = numeric_column(orders, orders_path, "add_to_cart_order")
    reordered = numeric_column(orders, orders_path, "reordered")
    frame = pd.DataFrame(
        {
            "user": orders["user_id"].to_numpy(),
            "order": orders["order_id"].to_numpy(),
            "number": order_number,
            "hour": hour,
            "gap": np.nan_to_num(gap, nan=0.0),
            "item": orders["product_id"].to_numpy(),
            "cart": cart,
            "reordered": reordered,
        }
    )
    per_order = frame.drop_duplicates("order").sort_values(["user", "number"])
    per_order["day"] = per_order.groupby("user")["gap"].cumsum()
    per_order["ts"] = (per_order["day"] * 86400 + per_order["hour"] * 3600).astype(np.int64)
    frame = frame.merge(per_order[["order", "ts"]], on="order", how="left")
    frame = frame.sort_values(["user", "ts", "cart"], kind="stable").reset_index(drop=True)
    events = pd.DataFrame(
        {
            "user_raw": frame["user"].astype(str),
            "item_raw": frame["item"].astype(str),
            "ts": frame["ts"].to_numpy(np.int64),
            "behavior": np.ones(len(frame), dtype=np.int64),
            "add_to_cart_order": frame["cart"].to_numpy(np.float32),
            "reordered": frame["reordered"].to_numpy(np.float32),
        }
    )
    used = products[products["product_id"].isin(set(frame["item"]))].reset_index(drop=True)
    items = pd.DataFrame(
        {
            "item_raw": used["product_id"].astype(str),
            "category_raw": used["aisle_id"].astype(str),
            "department": used["department_id"].astype(str),
            "product_name": used["product_name"].astype(str),
            "aisle": used["aisle_id"].map(aisles).fillna("").astype(str),
            "department_name": used["department_id"].map(departments).fillna("").astype(str),
        }
    )
    samples = _next_basket_samples(frame, items, seed)
    return RawLog(
        name="instacart-u593",
        events=events,
        items=items,
        samples=samples,
        behaviors=["purchase"],
        numeric_fields=["add_to_cart_order", "reordered"],
        text_fields=["product_name", "aisle", "department_name"],
        item_side_fields=["department"],
        source={"files": [str(orders_path), str(folder / "products.csv")]},
        label_rule="products of order n >= 2 positive; one same-aisle product not in the basket negative each",
        events_path=str(orders_path),
        items_path=str(folder / "products.csv"),
    )


def _next_basket_samples(frame: pd.DataFrame, items: pd.DataFrame, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    pos = frame[frame["number"] >= 2][["user", "order", "item", "ts"]].reset_index(drop=True)
    aisle_of = items.set_index("item_raw")["category_raw"]
    pos_aisle = aisle_of.loc[pos["item"].astype(str)].to_numpy()
    catalogue = items["item_raw"].to_numpy()
    order = np.argsort(items["category_raw"].to_numpy(), kind="stable")
    sorted_items, sorted_aisles = catalogue[order], items["category_raw"].to_numpy()[order]
    start = np.searchsorted(sorted_aisles, pos_aisle, side="left")
    size = np.searchsorted(sorted_aisles, pos_aisle, side="right") - start
    in_basket = set(zip(pos["order"].to_numpy(), pos["item"].astype(str).to_numpy()))
    negative = sorted_items[start + (rng.random(len(pos)) * size).astype(np.int64)]
    keep = np.ones(len(pos), dtype=bool)
    for _ in range(20):
        clash = np.fromiter(
            ((o, n) in in_basket for o, n in zip(pos["order"].to_numpy(), negative)), bool, len(pos)
        )
        if not clash.any():
            break
        redraw = sorted_items[
            start[clash] + (rng.random(int(clash.sum())) * size[clash]).astype(np.int64)
        ]
        negative[clash] = redraw
    else:
        keep = ~clash
    negatives = pd.DataFrame(
        {
            "user_raw": pos["user"].astype(str),
            "item_raw": negative,
            "ts": pos["ts"],
            "label": np.float32(0),
        }
    )[keep]
    positives = pd.DataFrame(
        {
            "user_raw": pos["user"].astype(str),
            "item_raw": pos["item"].astype(str),
            "ts": pos["ts"],
            "label": np.float32(1),
        }
    )
    return pd.concat([positives, negatives], ignore_index=True)
