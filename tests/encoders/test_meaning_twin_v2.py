"""TWIN-V2 means what its paper says: the history is clustered per user (hierarchical k-means
on item embeddings, or on frozen content when loaded), every cluster becomes one virtual
behavior (mean embedding, newest member's age, size) and the candidate attends over the clusters
with ``ln(size)`` added to the logits. Checked against a brute force written here."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from components import TWINV2, History, Query, TWINV2Config, take_history_rows
from components.layers.time_buckets import age_buckets
from components.ops.clustering import segment_kmeans_reference

from .inputs import SPEC, make_inputs, select

BRANCHING = (3, 2)


def _encoder(**overrides) -> TWINV2:
    torch.manual_seed(0)
    return TWINV2(SPEC, TWINV2Config(branching=BRANCHING, **overrides)).eval()


def naive_clusters(points: torch.Tensor) -> list[int]:
    """One user's hierarchical clusters with the loop k-means: level 1 over all rows, level 2
    inside every level-1 cluster."""
    n = points.shape[0]
    if n == 0:
        return []
    level1 = segment_kmeans_reference(points, torch.zeros(n, dtype=torch.int64), 1, BRANCHING[0])
    level2 = segment_kmeans_reference(points, level1, BRANCHING[0], BRANCHING[1])
    return (level1 * BRANCHING[1] + level2).tolist()


def naive_twin_v2(encoder: TWINV2, query: Query, history: History, s: int) -> torch.Tensor:
    lo, hi = int(history.offsets[s]), int(history.offsets[s + 1])
    if hi == lo:
        return torch.zeros(encoder.output_dim)
    labels = naive_clusters(history.embeddings[lo:hi].detach())
    keys, sizes = [], []
    for c in sorted(set(labels)):
        members = [lo + i for i, label in enumerate(labels) if label == c]
        bucket = int(age_buckets(history.age[members].min().reshape(1), 16))
        keys.append(
            torch.cat(
                [
                    history.embeddings[members].mean(dim=0),
                    encoder.time.embedding.weight[bucket],
                    history.behavior_embeddings[members].mean(dim=0),
                ]
            )
        )
        sizes.append(len(members))
    att = encoder.attention
    h, d = att.num_heads, att.head_dim
    keys_t = torch.stack(keys)
    heads = []
    for head in range(h):
        q = att.q.weight[head * d : (head + 1) * d] @ query.embeddings[s]
        k = keys_t @ att.k.weight[head * d : (head + 1) * d].T
        v = keys_t @ att.v.weight[head * d : (head + 1) * d].T
        logits = k @ q / math.sqrt(d)
        if encoder.config.size_bias:
            logits = logits + torch.log(torch.tensor(sizes, dtype=torch.float32))
        heads.append(torch.softmax(logits, dim=0) @ v)
    return att.out(torch.cat(heads))


@settings(max_examples=12, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 14), min_size=1, max_size=3),
    size_bias=st.booleans(),
    seed=st.integers(0, 999),
)
def test_twin_v2_equals_its_brute_force(lengths: list[int], size_bias: bool, seed: int) -> None:
    encoder = _encoder(size_bias=size_bias)
    query, history = make_inputs(lengths, seed)
    with torch.no_grad():
        out = encoder(query, history)
        for s in range(len(lengths)):
            want = naive_twin_v2(encoder, query, history, s)
            torch.testing.assert_close(out[s], want, atol=1e-5, rtol=1e-4)


def test_the_size_bias_switch_changes_the_output() -> None:
    query, history = make_inputs([14, 9], seed=3)
    with torch.no_grad():
        with_bias = _encoder(size_bias=True)(query, history)
        without = _encoder(size_bias=False)(query, history)
    assert not torch.allclose(with_bias, without)


def test_repeating_every_behavior_changes_nothing() -> None:
    """Each behavior twice in place: the same clusters with doubled sizes, so the ``ln n``
    bias moves every logit by ``ln 2`` and the attention is unchanged."""
    encoder = _encoder()
    query, history = make_inputs([11], seed=6)
    rows = torch.arange(11).repeat_interleave(2)
    doubled = take_history_rows(history, rows, history.lengths * 2)
    with torch.no_grad():
        torch.testing.assert_close(encoder(query, doubled), encoder(query, history))


def test_a_user_alone_equals_the_user_in_a_batch() -> None:
    encoder = _encoder()
    query, history = make_inputs([9, 0, 20, 4], seed=8)
    with torch.no_grad():
        together = encoder(query, history)
        for s in range(4):
            torch.testing.assert_close(together[s : s + 1], encoder(*select(query, history, s)))
    assert together[1].abs().max() == 0


def test_every_member_of_a_cluster_gets_gradient() -> None:
    encoder = _encoder()
    query, history = make_inputs([10], seed=2)
    encoder(query, history).sum().backward()
    assert bool((history.embeddings.grad.abs().sum(dim=1) > 0).all())


def test_content_clustering_ignores_the_id_embeddings() -> None:
    """With content loaded, clusters follow the content table: items with the same content
    share a cluster, and retraining the ID embeddings does not move any behavior."""
    encoder = _encoder()
    content = torch.randn(50, 6)
    content[7] = content[3]  # items 3 and 7 look alike
    encoder.load_content(content)
    query, history = make_inputs([12], seed=4)
    history.item_ids[:4] = torch.tensor([3, 7, 3, 7])
    with torch.no_grad():
        ids = encoder.cluster_ids(history)
        assert len(set(ids[:4].tolist())) == 1
        history.embeddings.mul_(-2.0)
        assert torch.equal(encoder.cluster_ids(history), ids)


def test_projected_content_clusters_as_the_full_content() -> None:
    """Content on a 4-dimensional subspace of R^48, projected on its top 4 components, gives
    the clusters of the unprojected content (distances are kept), in 4 columns."""
    g = torch.Generator().manual_seed(3)
    content = torch.randn(50, 4, generator=g) @ torch.randn(4, 48, generator=g)
    projected, full = _encoder(cluster_dim=4), _encoder(cluster_dim=0)
    projected.load_content(content)
    full.load_content(content)
    assert projected.content.shape == (50, 4) and full.content.shape == (50, 48)
    query, history = make_inputs([40, 25, 9], seed=5)
    with torch.no_grad():
        assert torch.equal(projected.cluster_ids(history), full.cluster_ids(history))
    torch.testing.assert_close(projected(query, history), full(query, history))


def test_cluster_dim_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="cluster_dim must be >= 0, got -1"):
        TWINV2Config(cluster_dim=-1)
