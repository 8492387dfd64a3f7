"""DMGIN: what the encoder means, pinned against a naive per-user computation.

The reference below groups each user's history with plain Python (G most recently active
groups, oldest -> newest, the M newest behaviors of each), builds every group vector from the
encoder's own sub-layers applied to exactly the valid rows (no padding, no masks), runs the
HSTU layers over exactly the valid groups, and attends from the candidate over exactly those
groups and exactly the K newest behaviors of its group. The encoder's batched, padded, masked
forward must equal it for every switch setting. The HSTU bias tables are drawn at random
(they start at zero, which would hide the time-gap and position paths).
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from components import DMGIN, DMGINConfig, EncoderSpec, History, Query, random_history

D, DB, NB, F = 8, 3, 4, 2
SMALL = DMGINConfig(
    max_groups=4,
    max_per_group=3,
    hidden_dim=8,
    num_heads=2,
    target_group_max_len=3,
    use_target_item_statistics=True,
)
SWITCHES = [
    "use_statistics",
    "use_intra_group_transformer",
    "use_group_embedding",
    "use_hstu",
    "use_group_attention",
    "use_target_group_attention",
    "use_target_group_statistics",
    "use_target_item_statistics",
]
CONFIGS = {
    "full": SMALL,
    "acausal": dataclasses.replace(SMALL, causal=False),
    "only_item_statistics": dataclasses.replace(
        SMALL,
        use_group_attention=False,
        use_target_group_attention=False,
        use_target_group_statistics=False,
    ),
    **{f"no_{s[4:]}": dataclasses.replace(SMALL, **{s: False}) for s in SWITCHES},
}


def spec(num_groups: int) -> EncoderSpec:
    return EncoderSpec(D, DB, NB, F, num_groups)


def make_model(config: DMGINConfig, num_groups: int, seed: int = 0) -> DMGIN:
    torch.manual_seed(seed)
    model = DMGIN(spec(num_groups), config).eval()
    with torch.no_grad():
        for layer in model.hstu:
            layer.bias.position.normal_(0.0, 1.0)
            layer.bias.time.normal_(0.0, 1.0)
    return model


def make_inputs(lengths: list[int], num_groups: int, seed: int = 0) -> tuple[Query, History]:
    """Histories whose group ids are all in [1, num_groups) (0 is "no group"), over 8 items
    (candidates often repeat one; item 0, unknown, sometimes)."""
    s = spec(num_groups)
    history = random_history(s, lengths, num_items=8, num_categories=5, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    b = len(lengths)
    query = Query(
        embeddings=torch.randn(b, D, generator=g),
        item_ids=torch.randint(0, 8, (b,), generator=g),
        category_ids=torch.randint(1, 5, (b,), generator=g),
        # mostly a group the user has, sometimes one nobody has
        group_ids=torch.randint(1, num_groups + 1, (b,), generator=g).clamp(max=num_groups - 1),
    )
    history.numeric = history.numeric * 10.0
    return query, history


# -- the naive reference -----------------------------------------------------------------------


def naive_groups(history: History, s: int, g_max: int, m_max: int) -> list[tuple[int, list[int]]]:
    """``[(group id, all its rows in time order)]`` of the G most recently active groups of
    sample s, oldest -> newest by their newest behavior. Group 0 is no group."""
    lo, hi = int(history.offsets[s]), int(history.offsets[s + 1])
    rows_of: dict[int, list[int]] = {}
    for r in range(lo, hi):
        group = int(history.group_ids[r])
        if group != 0:
            rows_of.setdefault(group, []).append(r)
    return sorted(rows_of.items(), key=lambda item: item[1][-1])[-g_max:]


def naive_features(model: DMGIN, history: History, rows: list[int]) -> torch.Tensor:
    """``[len(rows), H]`` behavior projections, one row at a time."""
    out = []
    for r in rows:
        age_days = math.log1p(max(float(history.age[r]), 0.0) / 86400.0)
        x = torch.cat(
            [history.embeddings[r], history.behavior_embeddings[r], torch.tensor([age_days])]
        )
        out.append(model.behavior_proj(x))
    return torch.stack(out) if out else torch.zeros(0, model.config.hidden_dim)


def naive_group_stats(history: History, rows: list[int], total: int) -> torch.Tensor:
    def days(seconds: float) -> float:
        return math.log1p(max(seconds / 86400.0, 0.0))

    per_type = [0] * NB
    for r in rows:
        per_type[int(history.behavior_ids[r])] += 1
    newest, oldest = float(history.age[rows[-1]]), float(history.age[rows[0]])
    numeric = history.numeric[rows]
    values = [math.log1p(c) for c in per_type] + [math.log1p(len(rows))]
    values += [days(newest), days(oldest), days(oldest - newest), len(rows) / total]
    return torch.cat([torch.tensor(values), numeric.mean(dim=0), numeric.max(dim=0).values])


def naive_sample(model: DMGIN, query: Query, history: History, s: int) -> torch.Tensor:
    cfg = model.config
    lo, hi = int(history.offsets[s]), int(history.offsets[s + 1])
    q = query.embeddings[s : s + 1]
    outputs = []
    if model.group_attention is not None:
        groups = naive_groups(history, s, cfg.max_groups, cfg.max_per_group)
        vectors, times = [], []
        for group, rows in groups:
            parts = []
            if model.intra is not None:
                slots = naive_features(model, history, rows[-cfg.max_per_group :]).unsqueeze(0)
                full = torch.ones(1, slots.shape[1], dtype=torch.bool)
                parts.append(model.intra(slots, full)[0].mean(dim=0))
            if model.stats_mlp is not None:
                parts.append(model.stats_mlp(naive_group_stats(history, rows, hi - lo)))
            if model.group_embedding is not None:
                parts.append(model.group_embedding.weight[group])
            vectors.append(model.group_proj(torch.cat(parts)))
            times.append(-float(history.age[rows[-1]]))
        if vectors:
            x = torch.stack(vectors).unsqueeze(0)
            valid = torch.ones(1, len(vectors), dtype=torch.bool)
            t = torch.tensor([times])
            for layer in model.hstu:
                x = layer(x, valid, t)
            outputs.append(model.group_attention(q, x, valid)[0])
        else:
            outputs.append(torch.zeros(model.group_attention.output_dim))
    wanted = int(query.group_ids[s])
    same = [r for r in range(lo, hi) if int(history.group_ids[r]) == wanted and wanted != 0]
    if model.target_attention is not None:
        kept = same[-cfg.target_group_max_len :]
        if kept:
            keys = naive_features(model, history, kept).unsqueeze(0)
            full = torch.ones(1, len(kept), dtype=torch.bool)
            outputs.append(model.target_attention(q, keys, full)[0])
        else:
            outputs.append(torch.zeros(model.target_attention.output_dim))
        outputs.append(torch.tensor([math.log1p(len(same))]))
    if model.target_stats_dim:
        outputs.append(naive_matched_stats(history, same))
    if model.item_stats_dim:
        item = int(query.item_ids[s])  # item 0 (unknown) matches none
        matched = [r for r in range(lo, hi) if item != 0 and int(history.item_ids[r]) == item]
        outputs.append(naive_matched_stats(history, matched))
    return torch.cat(outputs)


def naive_matched_stats(history: History, rows: list[int]) -> torch.Tensor:
    """log1p(count per behavior type), mean numeric fields, log1p(days since the newest)."""
    per_type = [0] * NB
    for r in rows:
        per_type[int(history.behavior_ids[r])] += 1
    means = history.numeric[rows].mean(dim=0) if rows else torch.zeros(F)
    newest = math.log1p(min(float(history.age[r]) for r in rows) / 86400.0) if rows else 0.0
    return torch.cat(
        [torch.tensor([math.log1p(c) for c in per_type]), means, torch.tensor([newest])]
    )


def assert_matches_reference(model: DMGIN, query: Query, history: History) -> None:
    with torch.no_grad():
        out = model(query, history)
        assert out.shape == (len(history.lengths), model.output_dim)
        for s in range(out.shape[0]):
            expected = naive_sample(model, query, history, s)
            torch.testing.assert_close(out[s], expected, atol=1e-5, rtol=1e-4)
            scored = model.forward_candidates(
                Query(*(getattr(query, f.name)[s : s + 1].unsqueeze(1) for f in _QF)),
                _one(history, s),
            )
            torch.testing.assert_close(scored[0, 0], expected, atol=1e-5, rtol=1e-4)


_QF = dataclasses.fields(Query)


def _one(history: History, s: int) -> History:
    from components import take_history_rows

    lo, hi = int(history.offsets[s]), int(history.offsets[s + 1])
    return take_history_rows(history, slice(lo, hi), history.lengths[s : s + 1])


# -- tests ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_forward_equals_the_naive_reference(name: str) -> None:
    """Fixed inputs: users with fewer groups than G, more than G, groups longer than M, an
    empty history, a candidate group the user never touched."""
    model = make_model(CONFIGS[name], num_groups=7)
    query, history = make_inputs([0, 2, 9, 30, 5], num_groups=7, seed=3)
    assert_matches_reference(model, query, history)


@settings(max_examples=12, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 25), min_size=1, max_size=4),
    num_groups=st.sampled_from([2, 4, 9]),
    name=st.sampled_from(sorted(CONFIGS)),
    seed=st.integers(0, 2**16),
)
def test_forward_equals_the_naive_reference_on_random_inputs(
    lengths: list[int], num_groups: int, name: str, seed: int
) -> None:
    model = make_model(CONFIGS[name], num_groups, seed)
    query, history = make_inputs(lengths, num_groups, seed)
    assert_matches_reference(model, query, history)


def test_every_switch_changes_the_output_when_flipped() -> None:
    query, history = make_inputs([12, 30, 7], num_groups=7, seed=4)
    with torch.no_grad():
        full = make_model(SMALL, 7)(query, history)
        for flag in [*SWITCHES, "causal"]:
            model = make_model(dataclasses.replace(SMALL, **{flag: False}), 7)
            out = model(query, history)
            if out.shape == full.shape:
                assert not torch.allclose(out, full, atol=1e-4), flag
            else:
                assert out.shape[1] < full.shape[1], flag


def test_hstu_is_causal_across_groups() -> None:
    """The evolved vector of group i does not change when a newer group changes; the newest
    one does. Non-causal: the oldest one changes too."""
    for causal in (True, False):
        model = make_model(dataclasses.replace(SMALL, causal=causal), 7)
        query, history = make_inputs([30], num_groups=7, seed=5)
        with torch.no_grad():
            base = model.encode_user(history)
            newest_group = int(history.group_ids[-1])
            rows = history.group_ids == newest_group
            history.embeddings[rows] = torch.randn(int(rows.sum()), D) * 3.0
            changed = model.encode_user(history)
        n = int(base.group_mask.sum())
        assert n >= 3
        assert not torch.allclose(changed.groups[0, n - 1], base.groups[0, n - 1])
        if causal:
            torch.testing.assert_close(changed.groups[0, : n - 1], base.groups[0, : n - 1])
        else:
            assert not torch.allclose(changed.groups[0, 0], base.groups[0, 0])


def test_only_behaviors_in_the_windows_matter() -> None:
    """An embedding outside every group's M newest slots and outside the candidate group's K
    newest changes nothing; one inside a group slot does; one in the K window does."""
    model = make_model(SMALL, 4)
    query, history = make_inputs([60], num_groups=4, seed=6)
    g = SMALL.max_per_group
    groups = naive_groups(history, 0, SMALL.max_groups, g)
    in_slots = {r for _, rows in groups for r in rows[-g:]}
    wanted = int(query.group_ids[0])
    same = [r for r in range(60) if int(history.group_ids[r]) == wanted]
    in_target = set(same[-SMALL.target_group_max_len :])
    outside = [r for r in range(60) if r not in in_slots | in_target]
    assert outside and in_slots - in_target and in_target
    with torch.no_grad():
        base = model(query, history)
        history.embeddings[outside] = torch.randn(len(outside), D) * 4.0
        history.behavior_embeddings[outside] = torch.randn(len(outside), DB) * 4.0
        torch.testing.assert_close(model(query, history), base)
        slot_only = sorted(in_slots - in_target)[0]
        history.embeddings[slot_only] = torch.randn(D) * 4.0
        moved = model(query, history)
        assert not torch.allclose(moved, base)
        history.embeddings[sorted(in_target)[-1]] = torch.randn(D) * 4.0
        assert not torch.allclose(model(query, history), moved)


def test_bigger_windows_than_the_data_change_nothing() -> None:
    """More padded group slots (G), behavior slots (M) and target slots (K) than any user fills:
    same output with the same parameters (the HSTU position table re-centred)."""
    fits = dataclasses.replace(SMALL, max_per_group=20, target_group_max_len=20)
    small = make_model(fits, 4)
    big_config = dataclasses.replace(fits, max_groups=9, max_per_group=45, target_group_max_len=60)
    big = DMGIN(spec(4), big_config).eval()
    state = small.state_dict()
    extra = big_config.max_groups - fits.max_groups
    for name, value in big.state_dict().items():
        if name.endswith("bias.position"):
            value.zero_()
            value[:, extra : extra + state[name].shape[1]] = state[name]
            state[name] = value
    big.load_state_dict(state)
    query, history = make_inputs([0, 7, 20, 3], num_groups=4, seed=7)
    assert max(int(history.lengths.max()), 1) <= 20
    with torch.no_grad():
        torch.testing.assert_close(big(query, history), small(query, history))


def test_padded_users_and_other_users_change_nothing() -> None:
    model = make_model(SMALL, 7)
    query, history = make_inputs([9, 25], num_groups=7, seed=8)
    with torch.no_grad():
        base = model(query, history)
        more_q, more_h = make_inputs([0, 9, 0, 25, 40, 0], num_groups=7, seed=8)
        # users 1 and 3 of the bigger batch are users 0 and 1 of the small one
        for field in ("embeddings", "item_ids", "category_ids", "group_ids"):
            getattr(more_q, field)[[1, 3]] = getattr(query, field)
        for field in (
            "embeddings", "item_ids", "category_ids", "group_ids", "behavior_ids", "age",
            "numeric", "behavior_embeddings",
        ):  # fmt: skip
            getattr(more_h, field)[0:9] = getattr(history, field)[0:9]
            getattr(more_h, field)[9:34] = getattr(history, field)[9:34]
        out = model(more_q, more_h)
    torch.testing.assert_close(out[[1, 3]], base)


def test_group_zero_is_no_group() -> None:
    """Behaviors of group 0 (an item missing from the item -> group table) take no group slot,
    and a candidate of group 0 has no same-group behaviors, in forward and in cached scoring."""
    model = make_model(SMALL, 5)
    query, history = make_inputs([14, 20, 6], num_groups=5, seed=9)
    history.group_ids[::3] = 0
    query.group_ids[1] = 0
    assert_matches_reference(model, query, history)
    grouped = model._group(history)
    assert not bool((grouped.group_ids[grouped.group_mask] == 0).any())
    with torch.no_grad():
        only_target = make_model(
            dataclasses.replace(SMALL, use_group_attention=False, use_target_item_statistics=False),
            5,
        )
        out = only_target(query, history)[1]
        # no same-group behavior: zero attention, log1p(0) count, zero statistics
        torch.testing.assert_close(out, torch.zeros_like(out))


def test_candidate_item_statistics_read_that_item_only() -> None:
    """The candidate item's statistics (the whole output when every other part is off) move
    when a behavior on that item changes type, and not when a behavior on any other item does;
    a candidate of item 0 (unknown) reads no behavior, even where history rows have item 0."""
    model = make_model(CONFIGS["only_item_statistics"], 5)
    query, history = make_inputs([40], num_groups=5, seed=11)
    item = int(history.item_ids[-1])
    query.item_ids[0] = item
    on_item = [r for r in range(40) if int(history.item_ids[r]) == item]
    others = [r for r in range(40) if int(history.item_ids[r]) != item]
    assert model.output_dim == NB + F + 1 and others
    with torch.no_grad():
        base = model(query, history)
        assert float(base[0, :NB].sum()) > 0  # the item's counts per behavior type
        history.behavior_ids[others] = (history.behavior_ids[others] % (NB - 1)) + 1
        history.numeric[others] += 5.0
        torch.testing.assert_close(model(query, history), base)
        history.behavior_ids[on_item[0]] = history.behavior_ids[on_item[0]] % (NB - 1) + 1
        changed = model(query, history)
        query.item_ids[0] = 0
        history.item_ids[::2] = 0
        unknown = model(query, history)
    assert not torch.allclose(changed, base)
    torch.testing.assert_close(unknown, torch.zeros_like(unknown))
