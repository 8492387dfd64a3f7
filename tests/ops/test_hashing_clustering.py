"""SDIM's SimHash buckets and TWIN-V2's per-user hierarchical k-means equal their loop twins,
and the clustering of a user does not depend on who else is in the batch."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from components.ops.clustering import (
    hierarchical_clusters,
    segment_kmeans,
    segment_kmeans_reference,
)
from components.ops.hashing import (
    bucket_sums,
    bucket_sums_reference,
    simhash_codes,
    simhash_codes_reference,
)
from components.ops.jagged import lengths_to_offsets


def _points(lengths: list[int], dim: int, seed: int, repeats: bool = True) -> torch.Tensor:
    """Random rows; with ``repeats`` some rows are copies of earlier ones (a history re-reads
    items), so equal points and equal distances occur."""
    g = torch.Generator().manual_seed(seed)
    n = sum(lengths)
    points = torch.randn(n, dim, generator=g)
    if repeats and n > 2:
        source = torch.randint(0, n, (n // 3,), generator=g)
        target = torch.randint(0, n, (n // 3,), generator=g)
        points[target] = points[source]
    return points


@settings(max_examples=40, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 12), min_size=1, max_size=4),
    hashes=st.integers(1, 4),
    bits=st.integers(1, 3),
    seed=st.integers(0, 10_000),
)
def test_bucket_sums_equal_the_loop(lengths: list[int], hashes: int, bits: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    embeddings = torch.randn(sum(lengths), 5, generator=g)
    planes = torch.randn(5, hashes * bits, generator=g)
    codes = simhash_codes(embeddings, planes, bits)
    assert torch.equal(codes, simhash_codes_reference(embeddings, planes, bits))
    offsets = lengths_to_offsets(torch.tensor(lengths))
    sums, counts = bucket_sums(embeddings, offsets, codes, 2**bits)
    want_sums, want_counts = bucket_sums_reference(embeddings, offsets, codes, 2**bits)
    torch.testing.assert_close(sums, want_sums)
    assert torch.equal(counts, want_counts)
    assert counts.sum(dim=(1, 2)).tolist() == [n * hashes for n in lengths]


def test_simhash_code_bits_follow_the_plane_order() -> None:
    planes = torch.tensor([[1.0, -1.0, 1.0]])  # one hash of 3 bits on a 1-d embedding
    assert simhash_codes(torch.tensor([[2.0], [-2.0]]), planes, 3).tolist() == [[5], [2]]


def test_bucket_sums_reject_codes_out_of_range() -> None:
    with pytest.raises(ValueError, match="codes must be in"):
        bucket_sums(torch.ones(2, 3), torch.tensor([0, 2]), torch.tensor([[0], [4]]), 4)


def test_bucket_sums_reject_codes_of_the_wrong_shape() -> None:
    """One code per row without the hash axis, or codes for other rows: a named error."""
    values, offsets = torch.ones(2, 3), torch.tensor([0, 2])
    with pytest.raises(ValueError, match=r"codes must be \[N=2, m\], got \(2,\)"):
        bucket_sums(values, offsets, torch.tensor([0, 1]), 4)
    with pytest.raises(ValueError, match=r"codes must be \[N=2, m\], got \(3, 1\)"):
        bucket_sums(values, offsets, torch.zeros(3, 1, dtype=torch.int64), 4)


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 15), min_size=1, max_size=4),
    k=st.integers(1, 4),
    iterations=st.integers(0, 3),
    seed=st.integers(0, 10_000),
)
def test_segment_kmeans_equals_the_loop(
    sizes: list[int], k: int, iterations: int, seed: int
) -> None:
    points = _points(sizes, 3, seed)
    g = torch.Generator().manual_seed(seed + 1)
    segment = torch.randint(0, len(sizes), (points.shape[0],), generator=g)  # unsorted segments
    got = segment_kmeans(points, segment, len(sizes), k, iterations)
    want = segment_kmeans_reference(points, segment, len(sizes), k, iterations)
    assert torch.equal(got, want)


def test_segment_kmeans_separates_far_apart_blobs() -> None:
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [20.0, 0.0], [0.0, 20.0]])
    labels = torch.arange(3).repeat(10)
    points = centres[labels] + 0.1 * torch.randn(30, 2, generator=g)
    assign = segment_kmeans(points, torch.zeros(30, dtype=torch.int64), 1, k=3, iterations=3)
    # one cluster per blob: the assignment is a relabelling of the blobs
    pairs = set(zip(labels.tolist(), assign.tolist(), strict=True))
    assert len(pairs) == 3 and len({a for _, a in pairs}) == 3


@settings(max_examples=25, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 30), min_size=2, max_size=4),
    seed=st.integers(0, 10_000),
)
def test_hierarchical_clusters_of_a_user_do_not_depend_on_the_batch(
    lengths: list[int], seed: int
) -> None:
    points = _points(lengths, 4, seed)
    offsets = lengths_to_offsets(torch.tensor(lengths))
    together = hierarchical_clusters(points, offsets, (3, 2))
    assert together.numel() == 0 or int(together.max()) < 6
    for b, n in enumerate(lengths):
        lo = int(offsets[b])
        alone = hierarchical_clusters(points[lo : lo + n], torch.tensor([0, n]), (3, 2))
        assert torch.equal(together[lo : lo + n], alone)


def test_hierarchical_clusters_split_inside_their_parent() -> None:
    """Level 2 refines level 1: rows in different level-1 clusters never share a final one."""
    points = _points([40], 2, seed=3, repeats=False)
    offsets = torch.tensor([0, 40])
    level1 = hierarchical_clusters(points, offsets, (4,))
    both = hierarchical_clusters(points, offsets, (4, 3))
    assert torch.equal(both // 3, level1)
    want = segment_kmeans_reference(points, level1, 4, 3)
    assert torch.equal(both % 3, want)
