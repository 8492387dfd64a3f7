"""``pipelines.data.subsample``: a seeded train subsample that keeps everything else whole."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipelines.data.loader import LoaderConfig, SampleLoader
from pipelines.data.prepared import DataError, PreparedDataset
from pipelines.data.subsample import derive_train_subsample, main, subsample_rows
from pipelines.data.synthetic import SyntheticConfig, write_synthetic_dataset


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sub") / "src"
    return write_synthetic_dataset(root, SyntheticConfig(users=12, mean_length=40, seed=2))


def _table(path: Path) -> dict[str, np.ndarray]:
    table = pq.read_table(path)
    return {c: table.column(c).to_numpy() for c in table.column_names}


def test_subsample_rows_is_seeded_sorted_and_without_replacement() -> None:
    picked = subsample_rows(1000, 100, 5)
    assert picked.shape == (100,) and np.all(np.diff(picked) > 0)  # sorted, no repeats
    assert picked.min() >= 0 and picked.max() < 1000
    assert np.array_equal(picked, subsample_rows(1000, 100, 5))
    assert not np.array_equal(picked, subsample_rows(1000, 100, 6))
    assert np.array_equal(subsample_rows(7, 7, 0), np.arange(7))
    assert np.array_equal(subsample_rows(7, None, 0), np.arange(7))
    with pytest.raises(ValueError, match=">= 1 rows, got 0"):
        subsample_rows(7, 0, 0)


def test_train_is_an_ordered_subset_and_the_rest_is_whole(source: Path, tmp_path: Path) -> None:
    full = _table(source / "samples" / "train.parquet")
    n = len(full["user"])
    out = derive_train_subsample(source, tmp_path / "sub", train_rows=n // 3, seed=1)
    got = _table(out / "samples" / "train.parquet")
    keep = subsample_rows(n, n // 3, 1)
    assert len(got["user"]) == n // 3
    for column, values in full.items():  # the exact rows, in their original order
        np.testing.assert_array_equal(got[column], values[keep], err_msg=column)
    for name in ("samples/valid.parquet", "samples/test.parquet", "events.parquet",
                 "items.parquet", "users.parquet"):  # fmt: skip
        assert pq.read_table(out / name).equals(pq.read_table(source / name)), name
    manifest = PreparedDataset.open(out).manifest
    before = PreparedDataset.open(source).manifest
    train = manifest["splits"]["train"]
    assert train["rows"] == n // 3 and train["positives"] == int(got["label"].sum())
    assert train["positive_rate"] == pytest.approx(float(got["label"].mean()))
    assert manifest["splits"]["valid"] == before["splits"]["valid"]
    if "samples" in before.get("counts", {}):  # the adapters' manifests count samples
        assert manifest["counts"]["samples"] == before["counts"]["samples"] - (n - n // 3)
    assert manifest["vocab"] == before["vocab"]
    assert manifest["subsample"]["train_rows"] == n // 3
    assert manifest["subsample"]["source_train_rows"] == n
    assert manifest["subsample"]["seed"] == 1


def test_loader_reads_the_subsample_with_the_source_histories(source: Path, tmp_path: Path) -> None:
    out = derive_train_subsample(source, tmp_path / "sub", train_rows=60, seed=0)
    config = LoaderConfig(batch_size=60, max_len=30, shuffle=False)
    batches = list(SampleLoader(out, "train", config))
    assert len(batches) == 1 and batches[0].batch_size == 60
    keep = subsample_rows(PreparedDataset.open(source).manifest["splits"]["train"]["rows"], 60, 0)
    whole = list(SampleLoader(source, "train", LoaderConfig(batch_size=10**6, max_len=30,
                                                            shuffle=False)))[0]  # fmt: skip
    lengths = whole.history_lengths.numpy()
    starts = np.concatenate([[0], np.cumsum(lengths)])
    for name, whole_values, got in (
        ("history item", whole.item_ids[0, whole.batch_size :], batches[0].item_ids[0, 60:]),
        ("history age", whole.history_age, batches[0].history_age),
    ):
        values = whole_values.numpy()
        expected = np.concatenate([values[starts[i] : starts[i + 1]] for i in keep])
        np.testing.assert_array_equal(got.numpy(), expected, err_msg=name)
    np.testing.assert_array_equal(batches[0].item_ids[0, :60].numpy(),
                                  whole.item_ids[0, keep].numpy())  # fmt: skip
    np.testing.assert_array_equal(batches[0].history_lengths.numpy(), lengths[keep])


def test_reused_when_the_same_and_redrawn_when_not(source: Path, tmp_path: Path) -> None:
    out = derive_train_subsample(source, tmp_path / "sub", train_rows=50, seed=0)
    stamp = (out / "samples" / "train.parquet").stat().st_mtime_ns
    derive_train_subsample(source, tmp_path / "sub", train_rows=50, seed=0)
    assert (out / "samples" / "train.parquet").stat().st_mtime_ns == stamp  # reused
    first = _table(out / "samples" / "train.parquet")["ts"]
    derive_train_subsample(source, tmp_path / "sub", train_rows=50, seed=9)
    assert json.loads((out / "manifest.json").read_text())["subsample"]["seed"] == 9
    assert not np.array_equal(_table(out / "samples" / "train.parquet")["ts"], first)


def test_more_rows_than_the_split_keeps_every_row(source: Path, tmp_path: Path) -> None:
    n = PreparedDataset.open(source).manifest["splits"]["train"]["rows"]
    out = derive_train_subsample(source, tmp_path / "all", train_rows=n + 100, seed=0)
    assert pq.read_table(out / "samples" / "train.parquet").equals(
        pq.read_table(source / "samples" / "train.parquet")
    )
    assert PreparedDataset.open(out).manifest["subsample"]["train_rows"] == n


def test_bad_input_is_named_and_writes_nothing(source: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="train_rows must be >= 1"):
        derive_train_subsample(source, tmp_path / "x", train_rows=0)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "manifest.json").write_text((source / "manifest.json").read_text())
    with pytest.raises(DataError, match="events.parquet.*missing"):
        derive_train_subsample(broken, tmp_path / "y", train_rows=5)
    with pytest.raises(DataError, match="manifest.json missing"):
        derive_train_subsample(tmp_path / "nowhere", tmp_path / "z", train_rows=5)
    assert not any(p.name.startswith((".x", ".y", ".z", "x", "y", "z")) for p in tmp_path.iterdir())


def test_cli(source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main([str(source), "--train-rows", "40", "--seed", "3", "--out", str(tmp_path / "c")]) == 0
    )
    assert "train 40 rows (seed 3)" in capsys.readouterr().out
    assert pq.read_metadata(tmp_path / "c" / "samples" / "train.parquet").num_rows == 40
    assert main([str(tmp_path / "nowhere"), "--train-rows", "4", "--out", str(tmp_path / "d")]) == 2
    assert "manifest.json" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main([str(source), "--train-rows", "0", "--out", str(tmp_path / "e")])
    assert exit_info.value.code == 2
