"""DMGIN: shapes, padding invariance, gradients, ablations, cached-state equivalence."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from components.encoders.base import Query
from components.encoders.dmgin import DMGIN, DMGINConfig

from .inputs import NG, SPEC, D, make_inputs, select

SMALL = DMGINConfig(
    max_groups=5, max_per_group=4, hidden_dim=8, num_heads=2, target_group_max_len=6
)


@pytest.fixture
def model() -> DMGIN:
    torch.manual_seed(0)
    return DMGIN(SPEC, SMALL).eval()


def test_shapes_and_empty_histories(model: DMGIN) -> None:
    query, history = make_inputs([0, 1, 7, 40, 0])
    out = model(query, history)
    assert out.shape == (5, model.output_dim)
    assert torch.isfinite(out).all()


def test_padding_invariance_alone_equals_in_batch(model: DMGIN) -> None:
    query, history = make_inputs([3, 0, 25, 60, 9], seed=1)
    batched = model(query, history)
    for i in range(5):
        alone = model(*select(query, history, i))
        torch.testing.assert_close(alone[0], batched[i], atol=1e-5, rtol=1e-5)


def test_other_users_do_not_change_a_users_output(model: DMGIN) -> None:
    query, history = make_inputs([10, 30], seed=2)
    base = model(query, history)[0]
    other_query, other_history = make_inputs([10, 30], seed=3)
    history.embeddings.data[10:] = other_history.embeddings[10:]
    history.group_ids[10:] = other_history.group_ids[10:]
    query.embeddings.data[1] = other_query.embeddings[1]
    torch.testing.assert_close(model(query, history)[0], base)


def test_every_parameter_gets_a_gradient() -> None:
    torch.manual_seed(0)
    model = DMGIN(SPEC, SMALL).train()
    query, history = make_inputs([20, 35, 12, 50], seed=4, num_groups=4)
    model(query, history).pow(2).sum().backward()
    missing = [
        n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0
    ]
    assert not missing
    assert history.embeddings.grad is not None and query.embeddings.grad is not None


def test_deterministic_for_a_seed() -> None:
    query, history = make_inputs([15, 4], seed=5)
    outs = []
    for _ in range(2):
        torch.manual_seed(7)
        outs.append(DMGIN(SPEC, SMALL).eval()(query, history))
    torch.testing.assert_close(outs[0], outs[1], atol=0, rtol=0)


@pytest.mark.parametrize(
    "flag",
    [
        "use_statistics",
        "use_intra_group_transformer",
        "use_group_embedding",
        "use_hstu",
        "use_group_attention",
        "use_target_group_attention",
        "use_target_group_statistics",
    ],
)
def test_each_ablation_runs_and_changes_the_output(flag: str) -> None:
    query, history = make_inputs([18, 0, 33], seed=6)
    torch.manual_seed(0)
    full = DMGIN(SPEC, SMALL).eval()
    torch.manual_seed(0)
    ablated = DMGIN(SPEC, dataclasses.replace(SMALL, **{flag: False})).eval()
    out = ablated(query, history)
    assert out.shape == (3, ablated.output_dim)
    assert torch.isfinite(out).all()
    smaller_model = sum(p.numel() for p in ablated.parameters()) < sum(
        p.numel() for p in full.parameters()
    )
    assert smaller_model or ablated.output_dim < full.output_dim
    if ablated.output_dim == full.output_dim:
        assert not torch.allclose(out, full(query, history))


def test_switching_everything_off_is_an_error() -> None:
    with pytest.raises(ValueError, match="needs use_group_attention"):
        DMGINConfig(
            use_group_attention=False,
            use_target_group_attention=False,
            use_target_group_statistics=False,
        )


@pytest.mark.parametrize("num_groups", [2, NG])
def test_cached_state_scores_equal_the_full_forward(model: DMGIN, num_groups: int) -> None:
    query, history = make_inputs([12, 0, 45], seed=8, num_groups=num_groups)
    c = 6
    g = torch.Generator().manual_seed(9)
    candidates = Query(
        embeddings=torch.randn(3, c, D, generator=g),
        item_ids=torch.randint(1, 50, (3, c), generator=g),
        category_ids=torch.randint(1, 5, (3, c), generator=g),
        group_ids=torch.randint(1, num_groups, (3, c), generator=g),
    )
    state = model.encode_user(history)
    scored = model.score_candidates(state, candidates)
    assert scored.shape == (3, c, model.output_dim)
    for j in range(c):
        single = Query(
            candidates.embeddings[:, j],
            candidates.item_ids[:, j],
            candidates.category_ids[:, j],
            candidates.group_ids[:, j],
        )
        torch.testing.assert_close(scored[:, j], model(single, history), atol=1e-5, rtol=1e-5)
    # the group index built by the first call is cached in the state and reused
    assert state.group_index is not None and state.group_tables is not None
    torch.testing.assert_close(model.score_candidates(state, candidates), scored)


def test_target_group_attention_only_reads_the_candidates_group() -> None:
    torch.manual_seed(0)
    config = dataclasses.replace(SMALL, use_group_attention=False)
    model = DMGIN(SPEC, config).eval()
    query, history = make_inputs([30], seed=10, num_groups=4)
    base = model(query, history)
    other = history.group_ids != query.group_ids[0]
    assert other.any()
    history.embeddings.data[other] += 5.0
    torch.testing.assert_close(model(query, history), base)
    same = ~other
    history.embeddings.data[same] += 5.0
    assert not torch.allclose(model(query, history), base)


def test_long_history_beyond_g_times_m() -> None:
    torch.manual_seed(0)
    model = DMGIN(SPEC, SMALL).eval()
    query, history = make_inputs([500], seed=11)
    assert torch.isfinite(model(query, history)).all()


def test_target_group_statistics_match_a_naive_count() -> None:
    """Statistics of the candidate's group equal a per-sample Python computation."""
    torch.manual_seed(0)
    only_stats = dataclasses.replace(
        SMALL, use_group_attention=False, use_target_group_attention=False
    )
    model = DMGIN(SPEC, only_stats).eval()
    query, history = make_inputs([0, 9, 40, 25], seed=12, num_groups=4)
    out = model(query, history)
    assert out.shape == (4, SPEC.num_behaviors + SPEC.num_numeric + 1)
    for i in range(4):
        lo, hi = int(history.offsets[i]), int(history.offsets[i + 1])
        same = [r for r in range(lo, hi) if int(history.group_ids[r]) == int(query.group_ids[i])]
        counts = [0.0] * SPEC.num_behaviors
        for r in same:
            counts[int(history.behavior_ids[r])] += 1
        means = (
            history.numeric[same].mean(dim=0) if same else torch.zeros(SPEC.num_numeric)
        ).tolist()
        newest = math.log1p(min(float(history.age[r]) for r in same) / 86400.0) if same else 0.0
        expected = torch.tensor([math.log1p(c) for c in counts] + means + [newest])
        torch.testing.assert_close(out[i], expected, atol=1e-5, rtol=1e-5)


@settings(max_examples=25, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 40), min_size=1, max_size=5),
    num_groups=st.sampled_from([2, 4, NG]),
    seed=st.integers(0, 2**16),
)
def test_forward_gathering_once_equals_the_two_gather_path(
    lengths: list[int], num_groups: int, seed: int
) -> None:
    """forward gathers the candidate's-group rows with the group slots; scoring the same single
    candidate from ``encode_user``'s state gathers them apart. Same output, same gradients."""
    torch.manual_seed(seed)
    model = DMGIN(SPEC, SMALL).eval()
    query, history = make_inputs(lengths, seed=seed, num_groups=num_groups)
    history = dataclasses.replace(
        history, behavior_embeddings=history.behavior_embeddings.requires_grad_()
    )
    weights = torch.randn(len(lengths), model.output_dim)
    fused = model(query, history)
    fused_grads = torch.autograd.grad((fused * weights).sum(), _leaves(query, history))
    candidates = Query(*(getattr(query, f).unsqueeze(1) for f in _QUERY_FIELDS))
    apart = model.score_candidates(model.encode_user(history), candidates).squeeze(1)
    apart_grads = torch.autograd.grad((apart * weights).sum(), _leaves(query, history))
    torch.testing.assert_close(fused, apart, atol=1e-5, rtol=1e-5)
    for got, expected in zip(fused_grads, apart_grads, strict=True):
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


_QUERY_FIELDS = ("embeddings", "item_ids", "category_ids", "group_ids")


def _leaves(query: Query, history) -> list[torch.Tensor]:  # noqa: ANN001 (History)
    return [query.embeddings, history.embeddings, history.behavior_embeddings]
