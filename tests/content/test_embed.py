"""Embedding step: caching, outputs, pluggable sources, bad input."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.content.embed import embed_dataset, item_texts, main
from pipelines.data.prepared import DataError


class CountingEncoder:
    """A deterministic fake text encoder (hashes words into 16 dims) that counts its calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.texts = 0

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        self.texts += len(texts)
        out = np.zeros((len(texts), 16), np.float32)
        for row, text in enumerate(texts):
            for word in text.split():
                out[row, hash(word) % 16] += 1.0
        return out


def test_embed_writes_normalized_table_and_rerun_encodes_nothing(tiny_dataset):
    enc = CountingEncoder()
    first = embed_dataset(tiny_dataset, encoder=enc, model_name="fake", batch_size=5)
    assert enc.calls == 3 and enc.texts == 12  # 12 distinct texts in batches of 5
    assert first.encoded == 12
    matrix = np.load(tiny_dataset / "content" / "embeddings.npy")
    assert matrix.shape == (13, 16) and np.all(matrix[0] == 0)
    np.testing.assert_allclose(np.linalg.norm(matrix[1:], axis=1), 1.0, rtol=1e-6)
    table = pq.read_table(tiny_dataset / "content" / "embeddings.parquet")
    assert table.column("item").to_pylist() == list(range(1, 13))
    np.testing.assert_allclose(np.asarray(table.column("embedding").to_pylist()), matrix[1:])

    again = CountingEncoder()
    second = embed_dataset(tiny_dataset, encoder=again, model_name="fake")
    assert again.calls == 0 and second.encoded == 0
    np.testing.assert_array_equal(second.vectors, first.vectors)
    # another model name is another cache key
    other = CountingEncoder()
    embed_dataset(tiny_dataset, encoder=other, model_name="fake-v2")
    assert other.texts == 12


def test_fields_choose_the_text(tiny_dataset):
    items = pq.read_table(tiny_dataset / "items.parquet")
    assert item_texts(items, ["genres"])[0] == "genres: sci"
    assert (
        item_texts(items, ["title", "genres"])[5]
        == "title: cooking pasta recipe part 5 | genres: food"
    )


def test_from_file_parquet_by_raw_id_and_npy(tiny_dataset, tmp_path):
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(12, 5)).astype(np.float32)
    raw_ids = [f"i{i}" for i in range(12, 0, -1)]  # reversed order on purpose
    pq.write_table(
        pa.table(
            {"item_raw": raw_ids, "embedding": pa.array(list(vectors), pa.list_(pa.float32()))}
        ),
        tmp_path / "clip.parquet",
    )
    result = embed_dataset(tiny_dataset, from_file=tmp_path / "clip.parquet")
    expected = vectors[::-1] / np.linalg.norm(vectors[::-1], axis=1, keepdims=True)
    np.testing.assert_allclose(result.vectors, expected, rtol=1e-5)
    np.save(tmp_path / "emb.npy", vectors)
    result = embed_dataset(tiny_dataset, from_file=tmp_path / "emb.npy")
    np.testing.assert_allclose(
        result.vectors[0], vectors[0] / np.linalg.norm(vectors[0]), rtol=1e-5
    )


def test_no_text_fields_is_a_clear_error_and_writes_nothing(tiny_dataset, capsys):
    manifest = json.loads((tiny_dataset / "manifest.json").read_text())
    manifest["text_fields"] = []
    (tiny_dataset / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="--from-file"):
        embed_dataset(tiny_dataset, encoder=CountingEncoder())
    assert main(["--dataset", str(tiny_dataset), "--encoder", "numpy:zeros"]) == 2
    assert "no text fields" in capsys.readouterr().err
    assert not (tiny_dataset / "content" / "embeddings.npy").exists()


def test_missing_embedding_for_an_item_names_the_row(tiny_dataset, tmp_path):
    pq.write_table(
        pa.table(
            {
                "item": [1, 2],
                "embedding": pa.array([[1.0, 0.0], [0.0, 1.0]], pa.list_(pa.float32())),
            }
        ),
        tmp_path / "partial.parquet",
    )
    with pytest.raises(DataError, match=r"column 'item'.*items.parquet row 2"):
        embed_dataset(tiny_dataset, from_file=tmp_path / "partial.parquet")


def test_empty_text_row_is_reported(tiny_dataset):
    items = pq.read_table(tiny_dataset / "items.parquet").to_pandas()
    items.loc[3, ["title", "genres"]] = ["", None]
    with pytest.raises(DataError, match="row 3 \\(item 4\\) has no text"):
        item_texts(pa.Table.from_pandas(items), ["title", "genres"])


def test_real_minilm_on_ml100k_puts_sequels_close(ml100k_embedded):
    matrix = np.load(ml100k_embedded / "content" / "embeddings.npy")
    assert matrix.shape == (1683, 384)
    items = pq.read_table(ml100k_embedded / "items.parquet").to_pandas()
    index = dict(zip(items["title"], items["item"]))
    star_wars, jedi = matrix[index["Star Wars"]], matrix[index["Return of the Jedi"]]
    others = matrix[1:] @ star_wars
    assert float(star_wars @ jedi) > np.quantile(others, 0.99)
