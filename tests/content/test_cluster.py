"""Interest groups: determinism, report consistency, nearest-centroid mapping, K search."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.content.cluster import assign_groups, assign_groups_reference, main, run
from pipelines.content.embed import embed_dataset
from pipelines.content.report import compression_stats, compression_stats_reference
from pipelines.data.prepared import PreparedDataset


def topic_encoder(texts: list[str]) -> np.ndarray:
    """Three well-separated topics + a little per-text noise (deterministic)."""
    out = np.zeros((len(texts), 8), np.float32)
    for row, text in enumerate(texts):
        topic = 0 if "space" in text else 1 if "cooking" in text else 2
        out[row, topic] = 5.0
        out[row, 3 + sum(map(ord, text)) % 5] = 1.0
    return out


def embedded(dataset):
    embed_dataset(dataset, encoder=topic_encoder, model_name="topics")
    return dataset


def test_same_seed_same_groups_and_topics_recovered(tiny_dataset):
    ds = embedded(tiny_dataset)
    first = run(ds, k=3, seed=7, plot=False)
    groups_a = pq.read_table(ds / "content" / "groups.parquet").column("group").to_numpy()
    second = run(ds, k=3, seed=7, plot=False)
    np.testing.assert_array_equal(first.groups, second.groups)
    np.testing.assert_array_equal(first.centroids, second.centroids)
    np.testing.assert_array_equal(groups_a, second.groups)
    assert set(groups_a.tolist()) == {1, 2, 3}  # 1-based, 0 reserved
    # items 1-4, 5-8, 9-12 are one topic each
    assert all(len(set(groups_a[i : i + 4])) == 1 for i in (0, 4, 8))


def test_report_matches_the_written_assignment(tiny_dataset):
    ds = embedded(tiny_dataset)
    run(ds, k=4, seed=0, plot=True)
    content = ds / "content"
    report = json.loads((content / "cluster_report.json").read_text())
    table = pq.read_table(content / "groups.parquet")
    groups = table.column("group").to_numpy()
    sizes = np.bincount(groups, minlength=5)[1:]
    assert report["sizes"] == sizes.tolist()
    assert report["max_size"] == sizes.max() and report["median_size"] == float(np.median(sizes))
    assert report["empty_clusters"] == int((sizes == 0).sum())
    events = PreparedDataset.open(ds).read_events()
    lookup = np.zeros(13, np.int64)
    lookup[table.column("item").to_numpy()] = groups
    distinct, lengths = [], []
    for u in range(1, events.num_users + 1):
        rows = events.item[events.offsets[u] : events.offsets[u + 1]]
        distinct.append(len(set(lookup[rows].tolist())))
        lengths.append(rows.size)
    comp = report["compression"]
    assert comp["median_groups"] == np.median(distinct)
    assert comp["ratio_of_medians"] == np.median(distinct) / np.median(lengths)
    assert abs(comp["ratio_of_means"] - np.mean(distinct) / np.mean(lengths)) < 1e-12
    assert (content / "cluster_report.png").read_bytes()[:4] == b"\x89PNG"
    centroids = np.load(content / "centroids.npy")
    matrix = np.load(content / "embeddings.npy")
    np.testing.assert_array_equal(assign_groups(matrix[1:], centroids), groups)


def test_unseen_items_map_to_nearest_centroid(tiny_dataset):
    ds = embedded(tiny_dataset)
    result = run(ds, k=3, seed=0, plot=False)
    rng = np.random.default_rng(1)
    unseen = rng.normal(size=(50, result.centroids.shape[1])).astype(np.float32)
    got = assign_groups(unseen, result.centroids)
    dist = ((unseen[:, None] - result.centroids[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(got, dist.argmin(1) + 1)
    # a vector equal to a centroid is assigned to it
    np.testing.assert_array_equal(assign_groups(result.centroids, result.centroids), [1, 2, 3])


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 40), k=st.integers(1, 8), d=st.integers(1, 6), seed=st.integers(0, 999))
def test_assign_groups_matches_reference(n, k, d, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    c = rng.normal(size=(k, d)).astype(np.float32) * 3
    np.testing.assert_array_equal(assign_groups(x, c, chunk=7), assign_groups_reference(x, c))


@settings(max_examples=40, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 20), min_size=1, max_size=8).filter(any),
    k=st.integers(1, 6),
    seed=st.integers(0, 999),
)
def test_compression_stats_match_reference(lengths, k, seed):
    rng = np.random.default_rng(seed)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    groups = rng.integers(1, k + 1, int(offsets[-1]))
    got = compression_stats(offsets, groups)
    want = compression_stats_reference(offsets, groups)
    for key, value in want.items():
        assert abs(got[key] - value) < 1e-12, key


def test_target_ratio_search_on_ml100k(ml100k_embedded):
    result = run(ml100k_embedded, target_ratio=0.2, seed=0, plot=False)
    trace = result.report["k_search"]
    assert len(trace) >= 3
    best = min(abs(t["ratio"] - 0.2) for t in trace)
    assert abs(result.report["compression"]["ratio_of_medians"] - 0.2) == best
    assert best < 0.05
    ks = [t["k"] for t in trace]
    ratios = [t["ratio"] for t in trace]
    assert ratios[int(np.argmax(ks))] >= ratios[int(np.argmin(ks))]  # more groups, less compression


def test_cli_errors_without_embeddings(tiny_dataset, capsys):
    assert main(["--dataset", str(tiny_dataset), "--k", "3"]) == 2
    assert "pipelines.content.embed" in capsys.readouterr().err
    embedded(tiny_dataset)
    assert main(["--dataset", str(tiny_dataset), "--k", "50"]) == 2
    assert "K must be in [1, 12]" in capsys.readouterr().err
    assert not (tiny_dataset / "content" / "groups.parquet").exists()
