"""``benchmarks.peers``: the conversion to FuxiCTR's LongCTR input is exact and leak-free (always
runs, plain numpy / pyarrow); the smoke benchmark runs only where the peer venv exists.

The converter test rebuilds every sample's history the way LongCTR's loader does
(``full_item_seq[user][:seq_len]``, then its last ``max_len``) from the written files alone and
compares it with our own CSR slice of the *source* dataset, so a wrong offset, an off-by-one
cutoff or a history that reads the sample's own event fails.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from benchmarks.peers.convert import derive_aligned, derive_window, subsample_rows, to_longctr
from benchmarks.quality.data import SMOKE_SYNTHETIC
from pipelines.data.prepared import SPLITS, PreparedDataset
from pipelines.data.synthetic import SyntheticConfig, write_synthetic_dataset

WINDOW = 50


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    base = tmp_path_factory.mktemp("peers")
    source = base / "syn"
    write_synthetic_dataset(source, SyntheticConfig(**SMOKE_SYNTHETIC))
    root = derive_aligned(source, base / "aligned", train_limit=250, seed=3)
    to_longctr(root, base / "longctr")
    return source, root, base / "longctr"


def _rows(path: Path) -> dict[str, np.ndarray]:
    table = pq.read_table(path)
    return {name: table.column(name).to_numpy() for name in table.column_names}


def test_train_is_a_seeded_subsample_and_valid_test_are_whole(converted) -> None:
    source, root, _ = converted
    src, out = PreparedDataset.open(source), PreparedDataset.open(root)
    train = src.read_samples("train")
    picked = subsample_rows(train.num_rows, 250, 3)
    assert picked.size == 250 and np.all(np.diff(picked) > 0)
    assert out.read_samples("train").equals(train.take(picked))
    assert not np.array_equal(picked, subsample_rows(train.num_rows, 250, 4))  # seed matters
    for split in ("valid", "test"):
        assert out.read_samples(split).equals(src.read_samples(split))
    assert out.manifest["splits"]["train"]["rows"] == 250
    assert out.numeric_fields == () and out.vocab["behaviors"] == 2
    events = out.read_events()
    assert np.all(events.behavior == 1) and events.numeric.shape[1] == 0
    original = src.read_events()
    assert np.array_equal(events.item, original.item) and np.array_equal(events.ts, original.ts)


def test_longctr_files_hold_our_histories_labels_and_no_future(converted) -> None:
    source, root, longctr = converted
    src = PreparedDataset.open(source)
    events = src.read_events()
    sequences = pq.read_table(longctr / "user_info.parquet").column("full_item_seq").to_pylist()
    assert len(sequences) == events.num_users + 1 and sequences[0] == []
    facts = json.loads((longctr / "longctr.json").read_text())
    ours = PreparedDataset.open(root)
    for split in SPLITS:
        rows = _rows(longctr / f"{split}.parquet")
        samples = ours.read_samples(split)
        assert facts["rows"][split] == samples.num_rows == rows["label"].shape[0]
        assert np.array_equal(rows["user_index"], samples.column("user").to_numpy())
        assert np.array_equal(rows["user_id"], rows["user_index"])
        assert np.array_equal(rows["item_index"], samples.column("item").to_numpy())
        assert np.array_equal(rows["label"], samples.column("label").to_numpy().astype(np.int64))
        assert rows["label"].dtype == np.int64  # the loader indexes with the stacked columns
        sample_ts = samples.column("ts").to_numpy()
        for i in range(samples.num_rows):
            user, seq_len = int(rows["user_index"][i]), int(rows["seq_len"][i])
            window = np.asarray(sequences[user][:seq_len][-WINDOW:], dtype=np.int64)
            ours_slice = events.history_slice(user, seq_len)
            expected = events.item[ours_slice][-WINDOW:]
            assert np.array_equal(window, expected), (split, i)
            assert np.all(events.ts[ours_slice] < sample_ts[i]), (split, i)  # no future event
            nxt = events.offsets[user] + seq_len
            if nxt < events.offsets[user + 1]:  # the next event is not before the sample
                assert events.ts[nxt] >= sample_ts[i], (split, i)


def test_item_table_is_positional_with_categories(converted) -> None:
    source, _, longctr = converted
    items = PreparedDataset.open(source).read_items()
    info = _rows(longctr / "item_info.parquet")
    vocab = PreparedDataset.open(source).vocab
    assert info["item_index"].shape[0] == vocab["items"]
    assert np.array_equal(info["item_index"], np.arange(vocab["items"]))  # loader uses iloc
    assert info["cate_id"][0] == 0
    ids = items.column("item").to_numpy()
    assert np.array_equal(info["cate_id"][ids], items.column("category").to_numpy())


def test_window_copy_keeps_only_full_histories(converted, tmp_path: Path) -> None:
    source, _, _ = converted
    root = derive_window(source, tmp_path / "w", window=60, rows=40, seed=0, eval_rows=10)
    train = PreparedDataset.open(root).read_samples("train")
    assert 0 < train.num_rows <= 40 and train.column("cutoff").to_numpy().min() >= 60
    with pytest.raises(ValueError, match="no sample has 100000 past events"):
        derive_window(source, tmp_path / "none", window=100_000, rows=40, seed=0, eval_rows=10)
    assert not (tmp_path / "none").exists()  # nothing half-written


def test_smoke_benchmark_with_the_peer_venv(tmp_path: Path) -> None:
    from benchmarks.peers.env import peer_ready

    reason = peer_ready()
    if reason:
        pytest.skip(reason)
    from benchmarks.peers.run import main

    argv = ["--smoke", "--models", "DIN,SDIM", "--data-dir", str(tmp_path / "data"),
            "--runs-dir", str(tmp_path / "runs"), "--results-dir", str(tmp_path / "out")]  # fmt: skip
    assert main(argv) == 0
    data = json.loads((tmp_path / "out" / "peers.json").read_text())
    block = data["datasets"]["synthetic-smoke"]["quality"]
    din = block["runs"]["DIN"]["lr0.002"]
    for side in ("ours", "theirs"):
        record = din[side]
        assert record["status"] == "ok", record.get("log_tail")
        assert 0.0 <= record["test"]["auc"] <= 1.0 and record["test"]["logloss"] > 0
        assert record["samples_per_second"] > 0 and record["peak_rss_mib"] > 0
    assert din["theirs"]["model"] == "DIN" and din["theirs"]["spec"]["max_len"] == 50
    sdim = block["runs"]["SDIM"]["lr0.002"]
    assert sdim["theirs"]["status"] == "ok"
    if sdim["ours"]["status"] == "skipped":  # until our SDIM is registered
        assert "not registered" in sdim["ours"]["error"]
    assert data["unaligned"] and "| DIN | FuxiCTR |" in (tmp_path / "out" / "peers.md").read_text()


def _quality_block(models: list[str], command: str, **settings) -> dict:
    base = {"max_len": 1000, "lrs": [0.002, 0.004], "train_limit": 40000, "models": models}
    return {
        "mode": "quality",
        "command": command,
        "settings": {**base, **settings},
        "runs": {m: {"lr0.002": {"ours": {}, "theirs": {}}} for m in models},
        "chosen": {m: {"ours": {"lr": 0.002}} for m in models},
    }


def test_a_quality_run_on_other_models_keeps_the_earlier_rows_of_the_same_protocol() -> None:
    from benchmarks.peers.run import store_block

    data: dict = {}
    store_block(data, "ml", "quality", _quality_block(["DIN", "ETA"], "first"))
    store_block(data, "ml", "quality", _quality_block(["SDIM", "ETA"], "second"))
    block = data["datasets"]["ml"]["quality"]
    assert sorted(block["runs"]) == ["DIN", "ETA", "SDIM"]
    assert sorted(block["chosen"]) == ["DIN", "ETA", "SDIM"]
    assert block["settings"]["models"] == ["DIN", "ETA", "SDIM"]
    assert block["commands"] == ["first", "second"]
    # another protocol (a different window) replaces the block instead of mixing rows
    store_block(data, "ml", "quality", _quality_block(["TWIN"], "third", max_len=200))
    assert sorted(data["datasets"]["ml"]["quality"]["runs"]) == ["TWIN"]
