"""The segment k-means' loop twin keeps the op's contract (int64 labels, the same default
number of Lloyd iterations, every non-empty segment clustered even after an empty one), and the
initial centroids are made on the points' device."""

from __future__ import annotations

import torch

from components.ops import clustering
from components.ops.clustering import segment_kmeans, segment_kmeans_reference


def test_twin_runs_the_ops_default_number_of_iterations() -> None:
    """On points where a fifth Lloyd iteration still moves a label, the twin's default gives the
    op's default (4 iterations)."""
    points = torch.randn(12, 2, generator=torch.Generator().manual_seed(148))
    segment = torch.zeros(12, dtype=torch.int64)
    four = segment_kmeans_reference(points, segment, 1, 3, iterations=4)
    assert not torch.equal(four, segment_kmeans_reference(points, segment, 1, 3, iterations=5))
    assert torch.equal(segment_kmeans_reference(points, segment, 1, 3), four)
    assert torch.equal(segment_kmeans(points, segment, 1, 3), four)


def test_a_segment_after_an_empty_one_is_still_clustered() -> None:
    points = torch.tensor([[0.0], [0.1], [5.0], [5.1]])
    segment = torch.tensor([1, 1, 1, 1])  # segment 0 has no rows
    for fn in (segment_kmeans, segment_kmeans_reference):
        labels = fn(points, segment, 2, k=2)
        assert labels.dtype == torch.int64, fn.__name__
        assert labels.tolist() == [0, 0, 1, 1], fn.__name__


def test_initial_centroids_live_on_the_points_device() -> None:
    points = torch.zeros(5, 3, device="meta")
    segment = torch.tensor([0, 0, 1, 1, 1], device="meta")
    centroids = clustering._initial_centroids(points, segment, 2, 2)
    assert centroids.device.type == "meta"
    assert centroids.shape == (2, 2, 3)
