"""The segment k-means' loop twin keeps the op's contract (int64 labels, the same default
number of Lloyd iterations, every non-empty segment clustered even after an empty one), and the
initial centroids are made on the points' device."""

from __future__ import annotations

import inspect

import torch

from components.ops import clustering
from components.ops.clustering import segment_kmeans, segment_kmeans_reference


def test_twin_has_the_ops_default_iterations() -> None:
    op = inspect.signature(segment_kmeans).parameters["iterations"].default
    twin = inspect.signature(segment_kmeans_reference).parameters["iterations"].default
    assert op == twin


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
