"""Per-user hierarchical clustering of behavior embeddings (TWIN-V2, arXiv 2407.16357).

TWIN-V2 compresses a lifelong history offline by clustering its items hierarchically, per
user. Here the clustering is a batched, deterministic k-means run per segment of jagged rows
(:func:`segment_kmeans`: every user, or every (user, parent cluster), its own k-means), applied
level after level (:func:`hierarchical_clusters`): level 1 splits each user's rows into ``k1``
clusters, level 2 splits each of those into ``k2``, ... The result is a cluster id per row in
``[0, k1 * k2 * ...)``, the same for a user alone or inside any batch.

Choices the paper leaves open: the initial centroids of a segment are its rows at evenly
spaced positions in time order (deterministic, no random state); Lloyd iterations are a fixed
number; a cluster that loses all its rows keeps its centroid; ties go to the lower cluster.
No gradient flows through the assignment.

Shapes: N rows, D dims, S segments, k clusters per segment.

Example:
    >>> points = torch.tensor([[0.0], [0.1], [5.0], [5.1]])
    >>> segment_kmeans(points, torch.zeros(4, dtype=torch.int64), 1, k=2).tolist()
    [0, 0, 1, 1]
"""

from __future__ import annotations

import torch

from components.ops.jagged import lengths_to_offsets, segment_ids
from components.ops.symbolic import bincount, check_offsets

__all__ = [
    "hierarchical_clusters",
    "principal_projection",
    "segment_kmeans",
    "segment_kmeans_reference",
]


def _initial_centroids(
    points: torch.Tensor, segment: torch.Tensor, num_segments: int, k: int
) -> torch.Tensor:
    """``[S, k, D]``: the j-th initial centroid of a segment is its row at position
    ``floor((2j + 1) * n_s / (2k))`` in row order (zeros for an empty segment)."""
    order = torch.sort(segment, stable=True)[1]  # rows grouped by segment, row order kept
    sizes = bincount(segment, num_segments)
    starts = lengths_to_offsets(sizes)[:-1]
    j = torch.arange(k, device=segment.device)
    position = torch.div(
        (2 * j + 1).unsqueeze(0) * sizes.unsqueeze(1), 2 * k, rounding_mode="floor"
    )
    # an empty segment may point one past the last row: a zero row appended there
    picked = torch.minimum(starts.unsqueeze(1) + position, sizes.sum())
    order = torch.cat([order, sizes.sum().reshape(1)])
    padded = torch.cat([points, points.new_zeros(1, points.shape[1])])
    return padded[order[picked]]


def _assign(points: torch.Tensor, segment: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Nearest centroid of its own segment for every row (ties -> the lower index)."""
    # one centroid slot at a time: O(N * D) memory, never the [N, k, D] gather
    distance = torch.stack(
        [((points - centroids[:, j][segment]) ** 2).sum(dim=-1) for j in range(centroids.shape[1])],
        dim=1,
    )  # [N, k]
    return torch.argmin(distance, dim=1)


@torch.fx.wrap
@torch.no_grad()
def segment_kmeans(
    points: torch.Tensor, segment: torch.Tensor, num_segments: int, k: int, iterations: int = 4
) -> torch.Tensor:
    """k-means inside every segment of rows: ``[N]`` int64 cluster in ``[0, k)`` of each row.

    Args:
        points: ``[N, D]`` float.
        segment: ``[N]`` int64 segment of each row, in ``[0, S)`` (need not be sorted).
        num_segments: S.
        k: clusters per segment (>= 1).
        iterations: Lloyd iterations after the initial assignment (>= 0).
    """
    if k < 1 or iterations < 0:
        raise ValueError(f"k must be >= 1 and iterations >= 0, got k={k}, iterations={iterations}")
    if points.dim() != 2 or segment.shape != (points.shape[0],):
        raise ValueError(
            f"points must be [N, D] and segment [N], got {tuple(points.shape)} and "
            f"{tuple(segment.shape)}"
        )
    points = points.float()
    centroids = _initial_centroids(points, segment, num_segments, k)  # [S, k, D]
    assign = _assign(points, segment, centroids)
    for _ in range(iterations):
        slot = segment * k + assign
        sums = points.new_zeros(num_segments * k, points.shape[1]).index_add(0, slot, points)
        counts = bincount(slot, num_segments * k).unsqueeze(1)
        means = sums / counts.clamp(min=1).to(points.dtype)
        centroids = torch.where(counts > 0, means, centroids.reshape(-1, points.shape[1]))
        centroids = centroids.view(num_segments, k, -1)
        assign = _assign(points, segment, centroids)
    return assign


def segment_kmeans_reference(
    points: torch.Tensor, segment: torch.Tensor, num_segments: int, k: int, iterations: int = 4
) -> torch.Tensor:
    """Loop twin of :func:`segment_kmeans`: each segment clustered on its own, in plain Python."""
    points = points.float()
    assign = torch.zeros(points.shape[0], dtype=torch.int64)
    for s in range(num_segments):
        rows = [r for r in range(points.shape[0]) if int(segment[r]) == s]
        if not rows:
            continue
        centroids = [points[rows[(2 * j + 1) * len(rows) // (2 * k)]].clone() for j in range(k)]

        def nearest(row: int, centroids: list[torch.Tensor] = centroids) -> int:
            distances = [float(((points[row] - c) ** 2).sum()) for c in centroids]
            return distances.index(min(distances))

        labels = {r: nearest(r) for r in rows}
        for _ in range(iterations):
            for j in range(k):
                members = [r for r in rows if labels[r] == j]
                if members:
                    centroids[j] = points[members].sum(dim=0) / len(members)
            labels = {r: nearest(r) for r in rows}
        for r in rows:
            assign[r] = labels[r]
    return assign


@torch.fx.wrap
@torch.no_grad()
def hierarchical_clusters(
    points: torch.Tensor, offsets: torch.Tensor, branching: tuple[int, ...], iterations: int = 4
) -> torch.Tensor:
    """Divisive clustering of each user's rows: ``[N]`` int64 cluster in ``[0, prod(branching))``.

    Level l runs :func:`segment_kmeans` with ``branching[l]`` clusters inside every cluster of
    level l - 1 (level 0: inside every user), so a cluster id is the mixed-radix number of the
    choices made at each level.

    Args:
        points: ``[N, D]``. offsets: ``[B + 1]`` jagged offsets. branching: ``(k1, k2, ...)``.
    """
    n, batch = points.shape[0], offsets.numel() - 1
    check_offsets(offsets, n)
    if not branching or min(branching) < 1:
        raise ValueError(f"branching must be a non-empty tuple of sizes >= 1, got {branching}")
    cluster = torch.zeros(n, dtype=torch.int64, device=points.device)
    user = segment_ids(offsets, n)
    width = 1  # clusters per user so far
    for k in branching:
        segment = user * width + cluster
        cluster = cluster * k + segment_kmeans(points, segment, batch * width, k, iterations)
        width *= k
    return cluster


def principal_projection(points: torch.Tensor, dim: int) -> torch.Tensor:
    """``[N, min(dim, D)]`` float32: centred ``points [N, D]`` on their top ``dim`` principal
    components (the eigenvectors of the largest eigenvalues of the scatter matrix, in float64), so
    pairwise distances are kept exactly when the points span at most ``dim`` directions. ``dim``
    0 or >= D: the points unchanged (float32)."""
    if dim == 0 or dim >= points.shape[1]:
        return points.to(torch.float32).clone()
    centred = points.to(torch.float64) - points.to(torch.float64).mean(dim=0, keepdim=True)
    _, vectors = torch.linalg.eigh(centred.T @ centred)  # eigenvalues ascending
    return (centred @ vectors[:, -dim:]).to(torch.float32)
