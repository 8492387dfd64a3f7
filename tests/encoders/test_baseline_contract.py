"""The baselines' contract around their values: config checks with exact messages, config
fields that reach the layers, and the window edges of ``history_rows`` (None exactly when no
sample is longer than the window; the rows named are the last ones)."""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch

from components.encoders.base import History, Query
from components.encoders.din import DIN, DINConfig, DINFull, DINFullConfig

from .inputs import SPEC, make_inputs


def _bfloat16(query: Query, history: History) -> tuple[Query, History]:
    """The inputs with bfloat16 embeddings (ids, ages and numeric fields as they are)."""
    return dataclasses.replace(query, embeddings=query.embeddings.detach().bfloat16()), (
        dataclasses.replace(
            history,
            embeddings=history.embeddings.detach().bfloat16(),
            behavior_embeddings=history.behavior_embeddings.detach().bfloat16(),
        )
    )


@pytest.mark.parametrize("config_class", [DINConfig, DINFullConfig])
@pytest.mark.parametrize("max_len", [0, -3])
def test_din_window_must_be_positive(config_class: type, max_len: int) -> None:
    with pytest.raises(ValueError, match=re.escape(f"max_len must be >= 1, got {max_len}")):
        config_class(max_len=max_len)


def test_din_hidden_sizes_reach_the_activation_unit() -> None:
    unit = DIN(SPEC, DINConfig(hidden=[7, 3])).unit
    linears = [m for m in unit.mlp.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (4 * SPEC.embedding_dim, 7),
        (7, 3),
        (3, 1),
    ]


def test_din_history_rows_window_edges() -> None:
    din = DIN(SPEC, DINConfig(max_len=4))
    query, history = make_inputs([4, 2, 0])
    assert din.history_rows(query, history) is None  # a sample of exactly max_len: all rows
    query, history = make_inputs([6, 2, 0, 5])
    rows = din.history_rows(query, history)
    assert rows is not None
    assert rows.tolist() == [2, 3, 4, 5, 6, 7, 9, 10, 11, 12]
    assert DINFull(SPEC).history_rows(query, history) is None


def test_din_full_keeps_the_last_max_len_like_din() -> None:
    """DINFull capped at max_len equals DIN with the same window (jagged vs padded paths)."""
    torch.manual_seed(0)
    full = DINFull(SPEC, DINFullConfig(max_len=3)).eval()
    din = DIN(SPEC, DINConfig(max_len=3)).eval()
    din.load_state_dict(full.state_dict())
    query, history = make_inputs([7, 3, 0, 1])
    torch.testing.assert_close(full(query, history), din(query, history))
    uncapped = DINFull(SPEC).eval()
    uncapped.load_state_dict(full.state_dict())
    assert not torch.allclose(uncapped(query, history)[0], full(query, history)[0])


def test_eta_hash_planes_follow_the_config_seed_not_torch_seed() -> None:
    from components.encoders.eta import ETA, ETAConfig

    torch.manual_seed(1)
    first = ETA(SPEC, ETAConfig(hash_seed=3)).planes
    torch.manual_seed(2)
    again = ETA(SPEC, ETAConfig(hash_seed=3)).planes
    other = ETA(SPEC, ETAConfig(hash_seed=4)).planes
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    assert not torch.equal(first, other)
    expected = torch.randn(
        SPEC.embedding_dim, 2 * SPEC.embedding_dim, generator=torch.Generator().manual_seed(3)
    )
    torch.testing.assert_close(first, expected, rtol=0, atol=0)  # default: m = 2 D bits
    assert ETA(SPEC, ETAConfig(hash_bits=5)).planes.shape == (SPEC.embedding_dim, 5)


@pytest.mark.parametrize(
    ("num_hashes", "hash_bits", "ok"),
    [(1, 1, True), (1, 16, True), (0, 3, False), (-1, 3, False), (4, 0, False), (4, 17, False)],
)
def test_sdim_config_bounds(num_hashes: int, hash_bits: int, ok: bool) -> None:
    from components.encoders.sdim import SDIMConfig

    if ok:
        SDIMConfig(num_hashes=num_hashes, hash_bits=hash_bits)
        return
    message = f"num_hashes must be >= 1 and hash_bits in [1, 16], got {num_hashes}, {hash_bits}"
    with pytest.raises(ValueError, match=re.escape(message)):
        SDIMConfig(num_hashes=num_hashes, hash_bits=hash_bits)


@pytest.mark.parametrize("hash_bits", [1, 3])
def test_sdim_has_two_to_the_tau_buckets_per_hash(hash_bits: int) -> None:
    from components.encoders.sdim import SDIM, SDIMConfig

    sdim = SDIM(SPEC, SDIMConfig(num_hashes=5, hash_bits=hash_bits))
    assert sdim.num_buckets == 2**hash_bits
    _, history = make_inputs([6, 0, 3])
    buckets = sdim.user_buckets(history)
    assert buckets.shape == (3, 5, 2**hash_bits, SPEC.embedding_dim + SPEC.behavior_dim)


def test_sdim_reads_unit_vectors_whatever_the_embedding_scale() -> None:
    """With one hash, the output is the unit-norm sum of the colliding behaviors (norm 1) or 0
    when none collides, also for embeddings of tiny norm."""
    from components.encoders.sdim import SDIM, SDIMConfig

    sdim = SDIM(SPEC, SDIMConfig(num_hashes=1, hash_bits=1))
    query, history = make_inputs([9, 7, 0, 5], seed=3)
    with torch.no_grad():
        history.embeddings.mul_(1e-4)
        history.behavior_embeddings.mul_(1e-4)
        norms = sdim(query, history).norm(dim=1)
    assert bool(((norms - 1).abs() < 1e-5).logical_or(norms == 0).all())
    assert float(norms[2]) == 0.0 and int((norms > 0.5).sum()) >= 2


def test_sdim_output_on_the_inputs_device_under_another_default() -> None:
    from components.encoders.sdim import SDIM, SDIMConfig

    sdim = SDIM(SPEC, SDIMConfig(num_hashes=4, hash_bits=2))
    query, history = make_inputs([5, 2])
    with torch.no_grad():
        expected = sdim(query, history)
        candidates = torch.stack([query.embeddings, query.embeddings.flip(0)], dim=1)
        buckets = sdim.user_buckets(history)
        grid = sdim.read(buckets, candidates)
        with torch.device("meta"):
            out = sdim(query, history)
            meta_grid = sdim.read(buckets, candidates)
    assert out.device.type == "cpu" and meta_grid.device.type == "cpu"
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(meta_grid, grid)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"branching": ()}, "branching must be sizes >= 1, got ()"),
        ({"branching": (4, 0)}, "branching must be sizes >= 1, got (4, 0)"),
        ({"kmeans_iterations": -1}, "kmeans_iterations must be >= 0 and num_heads >= 1"),
        ({"num_heads": 0}, "kmeans_iterations must be >= 0 and num_heads >= 1"),
        ({"cluster_dim": -1}, "cluster_dim must be >= 0, got -1"),
    ],
)
def test_twin_v2_config_errors(fields: dict, message: str) -> None:
    from components.encoders.twin_v2 import TWINV2Config

    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        TWINV2Config(**fields)


def test_twin_v2_config_accepts_its_smallest_values() -> None:
    from components.encoders.twin_v2 import TWINV2Config

    config = TWINV2Config(branching=[1], kmeans_iterations=0, num_heads=1, cluster_dim=0)
    assert config.branching == (1,)


@pytest.mark.parametrize(("dim", "heads"), [(16, 2), (3, 2), (2, 4)])
def test_twin_v2_heads_of_at_least_one_dim(dim: int, heads: int) -> None:
    from components.encoders.base import EncoderSpec
    from components.encoders.twin_v2 import TWINV2, TWINV2Config

    encoder = TWINV2(EncoderSpec(embedding_dim=dim), TWINV2Config(num_heads=heads))
    assert encoder.output_dim == heads * max(dim // heads, 1)


def test_twin_v2_content_buffer_is_saved_and_starts_empty() -> None:
    from components.encoders.twin_v2 import TWINV2, TWINV2Config

    encoder = TWINV2(SPEC, TWINV2Config(branching=(2,), time_dim=0))
    assert encoder.content.shape == (0, 0) and encoder.time is None
    assert "content" in encoder.state_dict()
    with pytest.raises(ValueError, match=re.escape("content must be [num_items, Dc], got (5,)")):
        encoder.load_content(torch.zeros(5))


def test_twin_v2_clusters_with_the_configured_iterations() -> None:
    from components.encoders.twin_v2 import TWINV2, TWINV2Config
    from components.ops.clustering import hierarchical_clusters

    _, history = make_inputs([30, 12], seed=4)
    for iterations in (0, 2):
        encoder = TWINV2(SPEC, TWINV2Config(branching=(3, 2), kmeans_iterations=iterations))
        expected = hierarchical_clusters(
            history.embeddings.detach(), history.offsets, (3, 2), iterations
        )
        assert torch.equal(encoder.cluster_ids(history), expected)
    assert not torch.equal(
        TWINV2(SPEC, TWINV2Config(branching=(3, 2), kmeans_iterations=0)).cluster_ids(history),
        TWINV2(SPEC, TWINV2Config(branching=(3, 2), kmeans_iterations=4)).cluster_ids(history),
    )


def test_twin_v2_in_bfloat16_stays_bfloat16() -> None:
    """A bf16 module on bf16 inputs computes in bf16 (cluster means, recency, size bias) and
    stays close to float32."""
    from components.encoders.twin_v2 import TWINV2, TWINV2Config

    torch.manual_seed(0)
    encoder = TWINV2(SPEC, TWINV2Config(branching=(3, 2))).eval()
    query, history = make_inputs([20, 7, 0], seed=2)
    with torch.no_grad():
        expected = encoder(query, history)
        query16, history16 = _bfloat16(query, history)
        clusters = encoder.to(torch.bfloat16).user_clusters(history16)
        out = encoder(query16, history16)
    assert clusters.keys.dtype == torch.bfloat16 and out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), expected, atol=0.05, rtol=0.05)


def test_twin_v2_output_on_the_inputs_device_under_another_default() -> None:
    from components.encoders.twin_v2 import TWINV2, TWINV2Config

    encoder = TWINV2(SPEC, TWINV2Config(branching=(2, 2))).eval()
    query, history = make_inputs([9, 3])
    with torch.no_grad():
        expected = encoder(query, history)
        with torch.device("meta"):
            out = encoder(query, history)
    assert out.device.type == "cpu"
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize(("top_k", "num_heads"), [(0, 2), (3, 0), (-1, -1)])
def test_twin_config_errors(top_k: int, num_heads: int) -> None:
    from components.encoders.twin import TWINConfig

    message = f"top_k and num_heads must be >= 1, got {top_k}, {num_heads}"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        TWINConfig(top_k=top_k, num_heads=num_heads)
    TWINConfig(top_k=1, num_heads=1)


def test_twin_structure_follows_the_paper() -> None:
    """Keys, values and queries are bias-free projections of e_i (K_h = e_i W_k); the cross
    features' bias exists only when there are cross features; heads have >= 1 dim."""
    from components.encoders.base import EncoderSpec
    from components.encoders.twin import TWIN, TWINConfig

    twin = TWIN(SPEC, TWINConfig(num_heads=2))
    assert twin.q.bias is None and twin.k.bias is None and twin.v.bias is None
    assert (
        twin.cross is not None
        and twin.cross.in_features == 8 + SPEC.behavior_dim + SPEC.num_numeric
    )
    assert TWIN(EncoderSpec(embedding_dim=3), TWINConfig(num_heads=2)).output_dim == 2
    bare = TWIN(EncoderSpec(embedding_dim=8), TWINConfig(num_heads=3, time_dim=0))
    assert bare.time is None and bare.cross is None
    _, history = make_inputs([4, 0, 2])
    bias = bare.cross_bias(history)
    assert bias.shape == (6, 3) and not bool(bias.any())


def test_twin_in_bfloat16_stays_bfloat16() -> None:
    from components.encoders.twin import TWIN, TWINConfig

    torch.manual_seed(0)
    twin = TWIN(SPEC, TWINConfig(top_k=3)).eval()
    query, history = make_inputs([9, 4, 0], seed=5)
    with torch.no_grad():
        expected = twin(query, history)
        query16, history16 = _bfloat16(query, history)
        out = twin.to(torch.bfloat16)(query16, history16)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), expected, atol=0.05, rtol=0.05)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"top_k": 0}, "top_k must be >= 1, got 0"),
        ({"search_key": "item"}, "search_key must be 'category' or 'group', got 'item'"),
    ],
)
def test_sim_config_errors(fields: dict, message: str) -> None:
    from components.encoders.sim import SIMConfig

    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        SIMConfig(**fields)
    SIMConfig(top_k=1, search_key="group")


def test_sim_esu_heads_and_time_embedding_follow_the_config() -> None:
    from components.encoders.sim import ExactSearchUnit, SIMConfig

    esu = ExactSearchUnit(SPEC, SIMConfig(num_heads=2, time_dim=0))
    assert esu.attention.num_heads == 2 and esu.attention.head_dim == SPEC.embedding_dim // 2
    assert esu.time is None
    assert esu.attention.k.in_features == SPEC.embedding_dim + SPEC.behavior_dim
    timed = ExactSearchUnit(SPEC, SIMConfig(num_heads=2, time_dim=5))
    assert timed.attention.k.in_features == SPEC.embedding_dim + 5 + SPEC.behavior_dim


@pytest.mark.parametrize("name", ["SIMHard", "SIMSoft", "ETA", "TWIN", "CiUBM", "TWINV2"])
def test_ranking_output_on_the_inputs_device_under_another_default(name: str) -> None:
    from components.encoders.example_inputs import random_query
    from components.encoders.registry import build_encoder

    from .inputs import SMALL_WINDOWS

    torch.manual_seed(0)
    encoder = build_encoder(name, SPEC, SMALL_WINDOWS[name]).eval()
    if name == "CiUBM":
        encoder.load_content(torch.nn.functional.normalize(torch.randn(50, 5), dim=1))
    _, history = make_inputs([7, 0, 4], seed=1)
    candidates = random_query(SPEC, 3, candidates=2, num_items=50, num_categories=5, seed=2)
    with torch.no_grad():
        expected = encoder.forward_candidates(candidates, history)
        with torch.device("meta"):
            out = encoder.forward_candidates(candidates, history)
    assert out.device.type == "cpu"
    torch.testing.assert_close(out, expected)
