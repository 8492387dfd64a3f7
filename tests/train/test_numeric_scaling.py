"""Numeric event fields are scaled before any layer reads them, with statistics fit on the
training events only and kept in the checkpoint; a field in the millions trains as well as the
same field in units."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from components.layers.numeric import NumericScaler, fit_numeric_scaling, signed_log
from pipelines.data.numeric import numeric_scaling, training_event_mask
from pipelines.data.prepared import PreparedDataset

from .conftest import train_process, write_config

REPO = Path(__file__).resolve().parents[2]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(-1e9, 1e9, allow_nan=False), min_size=2, max_size=50),
    st.floats(1e-3, 1e6),
)
def test_fitted_scaling_standardises_the_signed_log(values: list[float], unit: float) -> None:
    x = torch.tensor(values, dtype=torch.float64).view(-1, 1) * unit
    center, scale = fit_numeric_scaling(x.float())
    y = NumericScaler(1, center, scale)(x.float()).double()
    logged = signed_log(x)
    if logged.std(unbiased=False) > 1e-3:
        assert abs(float(y.mean())) < 1e-3 and abs(float(y.std(unbiased=False)) - 1.0) < 1e-3
    # monotone: the order of the raw values is kept
    order = torch.argsort(x.view(-1), stable=True)
    assert (y.view(-1)[order].diff() >= -1e-5).all()


def test_scaler_switches_and_errors() -> None:
    x = torch.tensor([[3e6], [1.0]])
    assert torch.equal(NumericScaler(1, enabled=False)(x), x)
    assert torch.allclose(NumericScaler(1)(x), signed_log(x))
    assert NumericScaler(0)(torch.zeros(4, 0)).shape == (4, 0)
    with pytest.raises(ValueError, match="finite"):
        fit_numeric_scaling(torch.tensor([[float("inf")]]))
    with pytest.raises(ValueError, match="scale"):
        NumericScaler(1, torch.zeros(1), torch.zeros(1))
    with pytest.raises(ValueError, match="entries"):
        NumericScaler(2, torch.zeros(1), torch.ones(1))


def test_statistics_come_from_the_training_events_only(tiny_dataset: Path) -> None:
    dataset = PreparedDataset.open(tiny_dataset)
    events = dataset.read_events()
    mask = training_event_mask(dataset, events)
    train = dataset.read_samples("train").to_pandas()
    longest = train.groupby("user")["cutoff"].max()
    naive = np.zeros_like(mask)
    for user in range(1, events.num_users + 1):
        start, end = events.offsets[user], events.offsets[user + 1]
        naive[start : start + min(int(longest.get(user, 0)), end - start)] = True
    assert np.array_equal(mask, naive)
    assert 0 < mask.sum() < mask.size  # later events exist and are left out
    center, scale = numeric_scaling(dataset)
    values = torch.from_numpy(events.numeric[mask])
    torch.testing.assert_close(center, signed_log(values.double()).mean(0).float())
    # changing events no training sample sees changes nothing
    events.numeric[~mask] *= 1000.0
    expected = fit_numeric_scaling(torch.from_numpy(events.numeric[mask]))
    torch.testing.assert_close(expected[0], center)
    torch.testing.assert_close(expected[1], scale)


def _scaled_copy(src: Path, dst: Path, factor: float) -> Path:
    shutil.copytree(src, dst)
    events = pd.read_parquet(dst / "events.parquet")
    events["num_dwell"] = (events["num_dwell"] * factor).astype(np.float32)
    events.to_parquet(dst / "events.parquet", index=False)
    return dst


@pytest.mark.distributed
def test_a_field_in_the_millions_trains_like_the_same_field_in_units(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    millions = _scaled_copy(tiny_dataset, tmp_path / "millions", 1e5)  # dwell ~ 1e6
    assert pd.read_parquet(millions / "events.parquet")["num_dwell"].median() > 5e5
    config = write_config(tmp_path / "c.yaml", tiny_dataset, tmp_path / "unused",
                          model={"encoder": "DMGIN", "encoder_config": {"max_groups": 4,
                                 "max_per_group": 4, "hidden_dim": 8}},
                          train={"epochs": 2, "patience": 0})  # fmt: skip

    def run(data: Path, name: str, *extra: str) -> dict:
        overrides = (f"data.dataset={data}", f"train.output_dir={tmp_path / name}", *extra)
        return train_process(config, *overrides)[0]

    with ThreadPoolExecutor(max_workers=2) as pool:  # three independent runs, two at a time
        jobs = [
            pool.submit(run, tiny_dataset, "units"),
            pool.submit(run, millions, "big"),
            pool.submit(run, millions, "raw", "model.numeric_scaling=false"),
        ]
        units, big, raw = (job.result() for job in jobs)
    # scaled, the two runs see almost the same inputs (signed log + standardisation)
    assert abs(big["test"]["auc"] - units["test"]["auc"]) < 0.03
    assert big["test"]["logloss"] < 0.8 and np.isfinite(big["test"]["logloss"])
    # unscaled, values in the millions wreck the model
    assert raw["test"]["logloss"] > big["test"]["logloss"] + 0.05
