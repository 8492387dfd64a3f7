"""The main job's DMGIN groups: K-means over the real MiniLM embeddings of the item texts, made
once and reused; a dataset without item text gets None (the job then groups by category)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from pipelines.data.prepared import PreparedDataset
from pipelines.data.synthetic import SyntheticConfig, write_synthetic_dataset
from pipelines.main_job import content_groups


def test_content_groups_follow_the_item_texts(tiny_dataset: Path) -> None:
    path = content_groups(PreparedDataset.open(tiny_dataset), k=3)
    assert path is not None and path.name == "main_groups_k3.parquet"
    table = pq.read_table(path)
    items, groups = table.column("item").to_numpy(), table.column("group").to_numpy()
    assert sorted(items) == list(range(1, 13))
    assert set(groups) == {1, 2, 3}  # 0 is "no group": never a cluster id
    by_item = dict(zip(items, groups))
    topics = [[by_item[i] for i in range(start, start + 4)] for start in (1, 5, 9)]
    assert all(len(set(t)) == 1 for t in topics)  # one topic, one group
    assert len({t[0] for t in topics}) == 3
    mtime = path.stat().st_mtime_ns
    assert content_groups(PreparedDataset.open(tiny_dataset), k=3) == path
    assert path.stat().st_mtime_ns == mtime  # reused, not recomputed


def test_no_item_text_means_no_content_groups(tmp_path: Path) -> None:
    root = tmp_path / "synthetic"
    write_synthetic_dataset(root, SyntheticConfig(users=5, mean_length=10, max_length=20))
    assert content_groups(PreparedDataset.open(root)) is None
    assert not np.any([p.name.startswith("main_groups") for p in root.rglob("*")])
