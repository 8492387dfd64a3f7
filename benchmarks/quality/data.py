"""Datasets of the quality benchmark: preparation, content files and the no-model references
(floor, repeat count).

Each named dataset is a prepared directory under ``--data-dir`` (default ``data/``, the recipes'
paths). Missing pieces are made on first use and reused afterwards:

* the prepared directory: ``python -m pipelines.prepare --dataset ADAPTER --out DIR``;
* content-cluster groups for DMGIN: ``DIR/content/embeddings.npy``
  (``python -m pipelines.content.embed``), then seeded K-means (``pipelines.content.cluster``'s
  :func:`cluster_items`, raw embeddings) written to the benchmark's own
  ``DIR/content/bench_groups_k{K}.parquet`` (+ ``.json`` report), so another K written to
  ``groups.parquet`` by someone else never changes what the benchmark measured;
* CiUBM's frozen content: ``DIR/content/aligned.npy`` (``python -m pipelines.content.csft``),
  the file the CiUBM recipes read.

The smoke dataset is synthetic (``pipelines.data.synthetic``, seconds to make, no real data
needed): its groups are the generator's latent interest groups and its "content" is a seeded
random unit vector per item (documented as such wherever it is used).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import finite_or_none, run_logged, tail


@dataclass(frozen=True)
class DatasetSpec:
    """Attributes:
    name: the benchmark's name (results file ``quality_<name>.json``).
    adapter: ``pipelines.prepare --dataset`` adapter name (None: synthetic smoke data).
    directory: folder under ``--data-dir``.
    recipe_prefix: ``recipes/configs/<prefix>_<model>.yaml``.
    path: a prepared directory given as ``--dataset PATH`` (a user's own data); None for the
        named datasets, which live under ``--data-dir``.
    """

    name: str
    adapter: str | None
    directory: str
    recipe_prefix: str
    path: Path | None = None

    @property
    def synthetic(self) -> bool:
        return self.adapter is None and self.path is None


DATASETS: dict[str, DatasetSpec] = {
    s.name: s
    for s in (
        DatasetSpec("ml-1m-u2999", "movielens-1m-u2999", "ml1m", "ml1m"),
        DatasetSpec("instacart-u593", "instacart-u593", "instacart", "instacart"),
        # quick mode: no ml-100k recipes exist; the MovieLens-1M recipes are used as written
        DatasetSpec("ml-100k", "movielens-100k", "ml100k", "ml1m"),
        DatasetSpec("taobao-tail10k", "taobao-tail10k", "taobao", "ml1m"),
        DatasetSpec("spotify-streaming-u13", "spotify-streaming-u13", "spotify", "ml1m"),
        DatasetSpec("synthetic-smoke", None, "synthetic-smoke", "ml1m"),
    )
}

#: the smoke dataset: 40 users x ~80 events, 300 items in 12 latent groups
SMOKE_SYNTHETIC = {
    "users": 40,
    "mean_length": 80,
    "max_length": 200,
    "items": 300,
    "groups": 12,
    "categories": 24,
    "samples_per_user": 20,
    "seed": 1,
}
RANDOM_CONTENT_DIM = 32


def _run_step(module: str, args: list[str], root: Path) -> None:
    log = root.parent / f"{root.name}.prepare.log"
    done = run_logged(["-m", module, *args], log)
    if done.returncode != 0:
        raise RuntimeError(f"python -m {module} {' '.join(args)} failed:\n{tail(log)}")


def resolve_dataset(name_or_path: str) -> DatasetSpec:
    """A named dataset (:data:`DATASETS`) or a prepared directory (``manifest.json`` inside).

    A directory is benchmarked with the generic MovieLens recipes (``ml1m_*``: the recipes
    that assume nothing about the log beyond the prepared contract); its results file is
    named after the directory.

    Raises:
        SystemExit: neither a known name nor a directory holding ``manifest.json``.
    """
    if name_or_path in DATASETS:
        return DATASETS[name_or_path]
    path = Path(name_or_path).expanduser()
    if not (path / "manifest.json").is_file():
        raise SystemExit(
            f"--dataset {name_or_path!r}: not a known dataset ({', '.join(sorted(DATASETS))}) "
            f"and {path / 'manifest.json'} does not exist (prepare it with python -m "
            "pipelines.prepare --events ... --out DIR)"
        )
    path = path.resolve()
    name = "".join(c if c.isalnum() or c in "-_." else "-" for c in path.name)
    if name in DATASETS:
        name = f"{name}-own"  # never overwrite a named dataset's results
    return DatasetSpec(name, None, str(path), "ml1m", path)


def has_item_text(root: Path) -> bool:
    """Whether the prepared dataset names item text fields (content variants need them)."""
    return bool(json.loads((root / "manifest.json").read_text()).get("text_fields"))


def ensure_prepared(spec: DatasetSpec, data_dir: Path) -> Path:
    """The prepared directory of ``spec`` (made when missing); checks it holds that dataset."""
    if spec.path is not None:
        return spec.path  # a user's own prepared directory: used as it is
    root = data_dir / spec.directory
    manifest = root / "manifest.json"
    if not manifest.is_file():
        root.parent.mkdir(parents=True, exist_ok=True)
        if spec.adapter is None:
            from pipelines.data.synthetic import SyntheticConfig, write_synthetic_dataset

            write_synthetic_dataset(root, SyntheticConfig(**SMOKE_SYNTHETIC))
        else:
            _run_step("pipelines.prepare", ["--dataset", spec.adapter, "--out", str(root)], root)
    found = json.loads(manifest.read_text()).get("dataset")
    wanted = spec.adapter or "synthetic"
    if found != wanted:
        raise SystemExit(f"{root} holds {found!r}, not {wanted!r}; choose another --data-dir")
    return root


def _ensure_embeddings(root: Path) -> None:
    if not (root / "content" / "embeddings.npy").is_file():
        _run_step("pipelines.content.embed", ["--dataset", str(root)], root)


def ensure_groups(spec: DatasetSpec, root: Path, k: int) -> tuple[Path, dict[str, Any]]:
    """``(item -> group parquet, report)`` for content-cluster DMGIN variants."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipelines.data.prepared import PreparedDataset

    content = root / "content"
    if spec.synthetic:
        path, report_path = content / "bench_groups_latent.parquet", None
        if not path.is_file():
            items = PreparedDataset.open(root).read_items()
            table = pa.table({"item": items.column("item"), "group": items.column("latent_group")})
            content.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, path)
        report = {"source": "synthetic latent interest groups (stand-in for content clusters)"}
        return path, report
    path = content / f"bench_groups_k{k}.parquet"
    report_path = path.with_suffix(".json")
    if not (path.is_file() and report_path.is_file()):
        from pipelines.content.cluster import cluster_items
        from pipelines.content.embed import load_item_matrix

        _ensure_embeddings(root)
        ds = PreparedDataset.open(root)
        item_index = ds.read_items().column("item").to_numpy().astype(np.int64)
        vectors = load_item_matrix(root, "embeddings")[item_index]
        events = ds.read_events()
        result = cluster_items(item_index, vectors, k, 0, events.offsets, events.item)
        report = {
            "source": "pipelines.content.cluster.cluster_items (seed 0) over raw "
            "all-MiniLM-L6-v2 item embeddings",
            "k": k,
            "compression": result.report.get("compression"),
            "max_size": result.report.get("max_size"),
            "median_size": result.report.get("median_size"),
            "empty_clusters": result.report.get("empty_clusters"),
        }
        tmp = path.with_name(path.name + ".tmp")
        pq.write_table(pa.table({"item": item_index, "group": result.groups}), tmp)
        tmp.replace(path)
        report_path.write_text(json.dumps(report, indent=2, sort_keys=True, default=float) + "\n")
    return path, json.loads(report_path.read_text())


def ensure_content(spec: DatasetSpec, root: Path) -> tuple[Path, str]:
    """``(frozen content .npy, description)`` for CiUBM."""
    content = root / "content"
    if spec.synthetic:
        path = content / "bench_random_content.npy"
        if not path.is_file():
            from pipelines.data.prepared import PreparedDataset

            rows = int(PreparedDataset.open(root).vocab["items"])
            matrix = np.random.default_rng(0).normal(size=(rows, RANDOM_CONTENT_DIM))
            matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
            matrix[0] = 0.0
            content.mkdir(parents=True, exist_ok=True)
            np.save(path, matrix.astype(np.float32))
        return path, "seeded random unit vectors (synthetic data has no item text)"
    path = content / "aligned.npy"
    if not path.is_file():
        _ensure_embeddings(root)
        _run_step("pipelines.content.csft", ["--dataset", str(root)], root)
    return path, "C-SFT aligned all-MiniLM-L6-v2 item embeddings (pipelines.content.csft)"


def ensure_raw_content(spec: DatasetSpec, root: Path) -> tuple[Path, str]:
    """``(raw content .npy, description)`` for the ``*-raw`` content variants: the item text
    embeddings before C-SFT (the synthetic data's random vectors, which have no aligned form)."""
    if spec.synthetic:
        return ensure_content(spec, root)
    _ensure_embeddings(root)
    return root / "content" / "embeddings.npy", "raw all-MiniLM-L6-v2 item embeddings"


def floor_metrics(root: Path) -> dict[str, dict[str, float | None]]:
    """The no-model floor (``pipelines.evaluate.floor``) on the valid and test splits."""
    from pipelines.data.prepared import PreparedDataset
    from pipelines.evaluate.floor import floor_predictions

    ds = PreparedDataset.open(root)
    return {
        split: {k: finite_or_none(v) for k, v in floor_predictions(ds, split)["metrics"].items()}
        for split in ("valid", "test")
    }


def repeat_count_metrics(root: Path) -> dict[str, dict[str, float | None]]:
    """The repeat-count reference (``pipelines.evaluate.repeat_count``) on the valid and test splits,
    with the share of samples whose candidate the history already holds (``seen_share``)."""
    from pipelines.data.prepared import PreparedDataset
    from pipelines.evaluate.repeat_count import repeat_count_predictions

    ds = PreparedDataset.open(root)
    events = ds.read_events()
    out: dict[str, dict[str, float | None]] = {}
    for split in ("valid", "test"):
        result = repeat_count_predictions(ds, split, events=events)
        out[split] = {k: finite_or_none(v) for k, v in result["metrics"].items()}
        out[split]["seen_share"] = float((result["counts"] > 0).mean())
    return out


def dataset_facts(root: Path) -> dict[str, Any]:
    """Counts and split sizes from the manifest, for the results file."""
    manifest = json.loads((root / "manifest.json").read_text())
    return {
        "dataset": manifest.get("dataset"),
        "counts": manifest.get("counts"),
        "splits": {k: v.get("rows") for k, v in manifest.get("splits", {}).items()},
        "label_rule": manifest.get("label_rule"),
        "split_rule": manifest.get("split_rule"),
    }
