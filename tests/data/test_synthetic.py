"""Synthetic generator: determinism, prepared-format validity, long-range label signal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from pipelines.data.loader import LoaderConfig, SampleLoader
from pipelines.data.prepared import PreparedDataset
from pipelines.data.synthetic import SyntheticConfig, generate_synthetic, write_synthetic_dataset

SMALL = SyntheticConfig(users=150, mean_length=600, max_length=3000, items=3000, seed=7)


def test_same_seed_same_data_other_seed_differs() -> None:
    a, b = generate_synthetic(SMALL), generate_synthetic(SMALL)
    pd.testing.assert_frame_equal(a.events, b.events)
    pd.testing.assert_frame_equal(a.samples, b.samples)
    c = generate_synthetic(SyntheticConfig(**{**SMALL.__dict__, "seed": 8}))
    assert not a.events["item"].equals(c.events["item"])


def test_written_dataset_follows_the_prepared_contract(tmp_path: Path) -> None:
    root = write_synthetic_dataset(tmp_path / "syn", SMALL)
    ds = PreparedDataset.open(root)
    events = pd.read_parquet(root / "events.parquet")
    vocab = ds.vocab
    assert events["user"].between(1, vocab["users"] - 1).all()
    assert events["item"].between(1, vocab["items"] - 1).all()
    assert events["behavior"].between(1, vocab["behaviors"] - 1).all()
    assert (events.groupby("user")["ts"].diff().dropna() > 0).all()  # sorted, strictly
    assert events["user"].is_monotonic_increasing
    assert events.groupby("user").size().max() <= SMALL.max_length
    # repeated items exist (users revisit)
    assert events.duplicated(["user", "item"]).mean() > 0.2
    for split in ("train", "valid", "test"):
        samples = ds.read_samples(split).to_pandas()
        assert len(samples) > 0
        for row in samples.sample(40, random_state=0).itertuples():
            naive = int((events[events["user"] == row.user]["ts"] < row.ts).sum())
            assert row.cutoff == naive
    # splits are chronological per user: no train sample comes after that user's test samples
    train = ds.read_samples("train").to_pandas().groupby("user")["ts"].max()
    test = ds.read_samples("test").to_pandas().groupby("user")["ts"].min()
    assert (train.loc[test.index] <= test).all()  # equal ts possible (same cutoff)
    batch = next(iter(SampleLoader(root, "train", LoaderConfig(batch_size=64, max_len=100))))
    assert batch.batch_size == 64


def test_labels_depend_on_long_range_history() -> None:
    data = generate_synthetic(SyntheticConfig(users=300, mean_length=800, items=4000, seed=1))
    group_of = data.items.set_index("item")["latent_group"]
    event_group = group_of.loc[data.events["item"]].to_numpy()
    offsets = np.concatenate([[0], np.cumsum(data.events.groupby("user").size().to_numpy())])
    full, recent = [], []
    for user, item, cutoff in zip(
        data.samples["user"], data.samples["item"], data.samples["cutoff"]
    ):
        history = event_group[offsets[user - 1] : offsets[user - 1] + cutoff]
        target = group_of.loc[item]
        full.append(np.mean(history == target))
        recent.append(np.mean(history[-50:] == target))
    labels = data.samples["label"].to_numpy()
    auc_full, auc_recent = roc_auc_score(labels, full), roc_auc_score(labels, recent)
    assert auc_full >= auc_recent + 0.05, (auc_full, auc_recent)
    assert 0.3 < labels.mean() < 0.7


def test_bad_config_is_rejected() -> None:
    with pytest.raises(ValueError, match="categories"):
        SyntheticConfig(groups=10, categories=5)
