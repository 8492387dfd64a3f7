"""The segment k-means' loop twin keeps the op's contract (int64 labels, the same default
number of Lloyd iterations, every non-empty segment clustered even after an empty one), and the
initial centroids are made on the points' device."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from components.ops import clustering
from components.ops.clustering import (
    principal_projection,
    segment_kmeans,
    segment_kmeans_reference,
)


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


@settings(max_examples=25, deadline=None)
@given(rank=st.integers(1, 5), extra=st.integers(0, 6), seed=st.integers(0, 10_000))
def test_projection_keeps_distances_of_points_spanning_few_directions(
    rank: int, extra: int, seed: int
) -> None:
    """Points on a rank-r affine subspace of R^16 keep every pairwise distance on r + extra
    components; on fewer (full-rank points) no distance grows and the kept scatter is the top
    eigenvalues' sum (the largest components, not any others)."""
    g = torch.Generator().manual_seed(seed)
    low = torch.randn(40, rank, generator=g, dtype=torch.float64)
    points = low @ torch.randn(rank, 16, generator=g, dtype=torch.float64) + 3.0
    projected = principal_projection(points, min(rank + extra, 15))
    assert projected.dtype == torch.float32 and projected.shape == (40, min(rank + extra, 15))
    torch.testing.assert_close(
        torch.cdist(projected.double(), projected.double()), torch.cdist(points, points),
        atol=1e-4, rtol=1e-4,
    )  # fmt: skip
    full = torch.randn(40, 16, generator=g, dtype=torch.float64)
    kept = principal_projection(full, rank).double()
    assert bool((torch.cdist(kept, kept) <= torch.cdist(full, full) + 1e-4).all())
    centred = full - full.mean(dim=0)
    top = torch.linalg.eigvalsh(centred.T @ centred)[-rank:].sum()
    torch.testing.assert_close((kept**2).sum(), top, atol=1e-3, rtol=1e-4)


def test_projection_off_or_wider_than_the_points_keeps_them() -> None:
    points = torch.randn(6, 4, dtype=torch.float64)
    for dim in (0, 4, 9):
        out = principal_projection(points, dim)
        assert out.dtype == torch.float32
        torch.testing.assert_close(out, points.float())
    assert principal_projection(points, 2).shape == (6, 2)
