"""Fixtures for the content pipeline: tiny prepared directories that follow
``pipelines/data/prepared.py``, and ml-100k prepared by a minimal reader of the real files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest


def write_prepared(
    root: Path,
    items: pd.DataFrame,
    events: pd.DataFrame,
    text_fields: list[str],
    numeric_fields: list[str] | None = None,
    test_fraction: float = 0.1,
    label_column: str | None = None,
    name: str = "tiny",
) -> Path:
    """Write a prepared directory: events sorted by (user, ts), per-user last ``test_fraction``
    of events as test samples and the rest as train (label = ``events[label_column]`` or 1)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "samples").mkdir(exist_ok=True)
    numeric_fields = numeric_fields or []
    events = events.sort_values(["user", "ts"], kind="stable").reset_index(drop=True)
    pq.write_table(pa.Table.from_pandas(items, preserve_index=False), root / "items.parquet")
    cols = ["user", "item", "category", "ts", "behavior"] + [f"num_{f}" for f in numeric_fields]
    pq.write_table(
        pa.Table.from_pandas(events[cols], preserve_index=False), root / "events.parquet"
    )
    users = np.arange(1, int(events["user"].max()) + 1)
    pq.write_table(pa.table({"user": users, "user_raw": users.astype(str)}), root / "users.parquet")
    rank = events.groupby("user").cumcount()
    size = events.groupby("user")["item"].transform("size")
    is_test = rank >= np.ceil(size * (1 - test_fraction))
    # cutoff = number of the user's events strictly before the sample ts
    first_of_ts = events.groupby(["user", "ts"]).cumcount()
    cutoff = rank - first_of_ts
    label = (
        events[label_column].astype(np.float32)
        if label_column
        else pd.Series(np.ones(len(events), np.float32))
    )
    samples = pd.DataFrame(
        {
            "user": events["user"].astype(np.int64),
            "item": events["item"].astype(np.int64),
            "category": events["category"].astype(np.int64),
            "ts": events["ts"].astype(np.int64),
            "label": label.to_numpy(np.float32),
            "cutoff": cutoff.astype(np.int64),
        }
    )
    for split, mask in (
        ("train", ~is_test),
        ("valid", np.zeros(len(events), bool)),
        ("test", is_test),
    ):
        pq.write_table(
            pa.Table.from_pandas(samples[np.asarray(mask)], preserve_index=False),
            root / "samples" / f"{split}.parquet",
        )
    manifest = {
        "version": 1,
        "name": name,
        "text_fields": text_fields,
        "numeric_fields": numeric_fields,
        "item_side_fields": [],
        "vocab": {
            "users": int(events["user"].max()) + 1,
            "items": int(items["item"].max()) + 1,
            "categories": int(items["category"].max()) + 1,
            "behaviors": int(events["behavior"].max()) + 1,
        },
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    """12 items (3 obvious topics), 6 users, 60 events."""
    rng = np.random.default_rng(0)
    topics = ["space rocket mission", "cooking pasta recipe", "football league match"]
    items = pd.DataFrame(
        {
            "item": np.arange(1, 13, dtype=np.int64),
            "item_raw": [f"i{i}" for i in range(1, 13)],
            "category": np.repeat(np.arange(1, 4, dtype=np.int64), 4),
            "category_raw": np.repeat(["a", "b", "c"], 4),
            "title": [f"{topics[i // 4]} part {i}" for i in range(12)],
            "genres": np.repeat(["sci", "food", "sport"], 4),
        }
    )
    events = pd.DataFrame(
        {
            "user": np.repeat(np.arange(1, 7, dtype=np.int64), 10),
            "item": rng.integers(1, 13, 60).astype(np.int64),
            "ts": np.tile(np.arange(10, dtype=np.int64) * 100, 6),
            "behavior": np.ones(60, np.int64),
        }
    )
    events["category"] = items.set_index("item").loc[events["item"], "category"].to_numpy()
    return write_prepared(tmp_path / "tiny", items, events, ["title", "genres"])


def build_ml100k(shared_data: Path, root: Path) -> Path:
    """ml-100k -> prepared directory (rating >= 4 labels, last 10% of each user as test)."""
    src = shared_data / "movielens-100k"
    raw_items = pd.read_csv(src / "ml-100k.item", sep="\t", dtype=str, keep_default_na=False)
    raw_items.columns = [c.split(":")[0] for c in raw_items.columns]
    inter = pd.read_csv(src / "ml-100k.inter", sep="\t")
    inter.columns = [c.split(":")[0] for c in inter.columns]
    item_of = {raw: i + 1 for i, raw in enumerate(raw_items["item_id"])}
    genres = raw_items["class"].str.split(" ").str[0]
    genre_of = {g: i + 1 for i, g in enumerate(sorted(genres.unique()))}
    items = pd.DataFrame(
        {
            "item": np.arange(1, len(raw_items) + 1, dtype=np.int64),
            "item_raw": raw_items["item_id"],
            "category": genres.map(genre_of).astype(np.int64),
            "category_raw": genres,
            "title": raw_items["movie_title"],
            "genres": raw_items["class"],
        }
    )
    user_of = {u: i + 1 for i, u in enumerate(sorted(inter["user_id"].unique()))}
    events = pd.DataFrame(
        {
            "user": inter["user_id"].map(user_of).astype(np.int64),
            "item": inter["item_id"].astype(str).map(item_of).astype(np.int64),
            "ts": inter["timestamp"].astype(np.int64),
            "behavior": np.ones(len(inter), np.int64),
            "num_rating": inter["rating"].astype(np.float32),
        }
    )
    events["category"] = items["category"].to_numpy()[events["item"].to_numpy() - 1]
    events["label"] = (events["num_rating"] >= 4).astype(np.float32)
    return write_prepared(
        root,
        items,
        events,
        ["title", "genres"],
        ["rating"],
        label_column="label",
        name="movielens-100k",
    )


@pytest.fixture(scope="session")
def ml100k_dataset(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_ml100k(shared_data, tmp_path_factory.mktemp("ml100k") / "ml100k")


@pytest.fixture(scope="session")
def ml100k_embedded(ml100k_dataset: Path) -> Path:
    """ml-100k with real MiniLM embeddings in content/ (computed once per session, ~6 s)."""
    from pipelines.content.embed import embed_dataset

    embed_dataset(ml100k_dataset)
    return ml100k_dataset
