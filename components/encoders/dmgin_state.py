"""DMGIN's per-user serving state, kept up to date as new behaviors arrive.

:meth:`DMGIN.encode_user` needs the whole history each time. A server instead keeps, per user,
sufficient statistics of every group the user touched (counts per behavior type, numeric sums
and maxima, first / last / newest ages, last position) and the ``W = max(M, K)`` most recent
behaviors of each group (their embeddings, projected lazily), plus the intra-group transformer's
pooled vector of each kept group. Appending k behaviors then costs O(k) updates, the intra-group
transformer on the touched groups only, the statistics MLP on the G kept groups and the HSTU over
G groups, and the result equals :meth:`DMGIN.encode_user` + :meth:`DMGIN.score_candidates` on the
whole history (``tests/encoders/test_dmgin_state.py``, random logs, to 1e-5).

Ages are seconds before the state's reference time (``History.age``): appended behaviors use the
same reference (a behavior newer than it has a negative age, which every DMGIN feature clamps to
0 and the HSTU time bias reads as a gap); a server rebuilds a state to move its reference time.

One user per state (B = 1). Shapes: S groups touched, R rows retained, G kept groups, W recent
behaviors per group, C candidates, D / D_b / H dims, F numeric fields, nb behavior types.

Example:
    >>> from components.encoders.base import EncoderSpec, take_history_rows
    >>> from components.encoders.dmgin import DMGIN, DMGINConfig
    >>> from components.encoders.example_inputs import random_history, random_query
    >>> spec = EncoderSpec(embedding_dim=16, behavior_dim=4, num_behaviors=3, num_groups=9)
    >>> enc = DMGIN(spec, DMGINConfig(max_groups=4, max_per_group=3, hidden_dim=16)).eval()
    >>> full = random_history(spec, [40])
    >>> state = build_dmgin_state(enc, take_history_rows(full, slice(0, 30), torch.tensor([30])))
    >>> state = append_dmgin_events(enc, state, take_history_rows(full, slice(30, 40),
    ...                                                            torch.tensor([10])))
    >>> cands = random_query(spec, 1, candidates=5)
    >>> got = score_dmgin_state(enc, state, cands.embeddings[0], cands.group_ids[0])
    >>> torch.allclose(got, enc.forward_candidates(cands, full)[0], atol=1e-5)
    True
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from components.encoders.base import NO_GROUP, History, searched_groups
from components.encoders.dmgin import DMGIN
from components.layers.self_attention import masked_mean
from components.ops.grouping import SECONDS_PER_DAY
from components.ops.jagged import lengths_to_offsets

__all__ = [
    "DMGINServingState",
    "append_dmgin_events",
    "build_dmgin_state",
    "score_dmgin_state",
]


@dataclass
class DMGINServingState:
    """One user's incremental DMGIN state (every field a tensor, so it serialises as a dict).

    Attributes:
        length: ``[]`` int64 behaviors seen (all of them, group 0 included).
        keys: ``[S]`` int64 group id of each touched group (never :data:`NO_GROUP`).
        count: ``[S]`` int64 behaviors per group.
        type_counts: ``[S, nb]`` float32 behaviors per (group, behavior type).
        numeric_sum, numeric_max: ``[S, F]`` float32.
        last_position: ``[S]`` int64 position of the group's most recent behavior.
        last_age, first_age: ``[S]`` float32 age of its most recent / oldest behavior (by
            position); min_age: ``[S]`` smallest age (the candidate's-group recency).
        recent: ``[S, W]`` int64 rows of the retained store of the group's W most recent
            behaviors, oldest -> newest, left-aligned, -1 where empty.
        embeddings, behavior_embeddings, age: ``[R, D]``, ``[R, D_b]``, ``[R]`` retained rows.
        pooled: ``[S, H]`` intra-group transformer output (valid for the kept groups).
        groups, group_mask: ``[G, H]``, ``[G]`` evolved group vectors after the HSTU.
        item_keys, item_count, item_type_counts, item_numeric_sum, item_min_age: the same
            statistics per item the user touched (``[I]``, ``[I]``, ``[I, nb]``, ``[I, F]``,
            ``[I]``; item 0 never), kept only when the encoder reads the candidate item's
            statistics (``use_target_item_statistics``; empty otherwise).
    """

    length: torch.Tensor
    keys: torch.Tensor
    count: torch.Tensor
    type_counts: torch.Tensor
    numeric_sum: torch.Tensor
    numeric_max: torch.Tensor
    last_position: torch.Tensor
    last_age: torch.Tensor
    first_age: torch.Tensor
    min_age: torch.Tensor
    recent: torch.Tensor
    embeddings: torch.Tensor
    behavior_embeddings: torch.Tensor
    age: torch.Tensor
    pooled: torch.Tensor
    groups: torch.Tensor
    group_mask: torch.Tensor
    item_keys: torch.Tensor
    item_count: torch.Tensor
    item_type_counts: torch.Tensor
    item_numeric_sum: torch.Tensor
    item_min_age: torch.Tensor

    def to_dict(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, tensors: dict[str, torch.Tensor]) -> DMGINServingState:
        """The state of :meth:`to_dict`'s tensors. States saved before the per-item tables
        existed (no ``item_*`` entries) come from encoders that never read them: they get
        empty tables."""
        tensors = dict(tensors)
        if not any(name in tensors for name in _ITEM_FIELDS):
            nb, f = tensors["type_counts"].shape[1], tensors["numeric_sum"].shape[1]
            tensors.update(_empty_items(nb, f))
        return cls(**{f.name: tensors[f.name] for f in fields(cls)})


def _window(enc: DMGIN) -> int:
    return max(enc.config.max_per_group, enc.config.target_group_max_len)


_ITEM_FIELDS = ("item_keys", "item_count", "item_type_counts", "item_numeric_sum", "item_min_age")


def _empty_items(nb: int, f: int) -> dict[str, torch.Tensor]:
    return {
        "item_keys": torch.zeros(0, dtype=torch.int64),
        "item_count": torch.zeros(0, dtype=torch.int64),
        "item_type_counts": torch.zeros(0, nb),
        "item_numeric_sum": torch.zeros(0, f),
        "item_min_age": torch.zeros(0),
    }


def _item_statistics(enc: DMGIN, history: History) -> dict[str, torch.Tensor]:
    """Per item of ``history`` (item 0 left out): count, counts per behavior type, numeric
    sums and smallest age; empty tables when ``enc`` does not read them."""
    nb, f = enc.spec.num_behaviors, history.numeric.shape[1]
    ids = history.item_ids if enc.item_stats_dim else history.item_ids[:0]
    rows = torch.nonzero(ids != 0).squeeze(1)
    keys, slot = torch.unique(ids[rows], return_inverse=True)
    i = keys.numel()
    age = history.age[rows].to(torch.float32)
    return {
        "item_keys": keys,
        "item_count": torch.bincount(slot, minlength=i),
        "item_type_counts": torch.zeros(i * nb)
        .index_add(0, slot * nb + history.behavior_ids[rows], torch.ones(rows.numel()))
        .view(i, nb),
        "item_numeric_sum": torch.zeros(i, f).index_add(
            0, slot, history.numeric[rows].to(torch.float32)
        ),
        "item_min_age": torch.full((i,), float("inf")).scatter_reduce(0, slot, age, "amin"),
    }


def _check_one_user(history: History) -> None:
    if history.lengths.numel() != 1:
        raise ValueError(f"a serving state holds one user, got {history.lengths.numel()}")
    if history.embedding_rows is not None:
        raise ValueError("a serving state needs one embedding per behavior (embedding_rows)")


@torch.no_grad()
def build_dmgin_state(enc: DMGIN, history: History) -> DMGINServingState:
    """The state of one user's whole ``history`` (B = 1), O(L log L)."""
    _check_one_user(history)
    spec, w = enc.spec, _window(enc)
    n = history.group_ids.numel()
    grouped_rows = torch.nonzero(history.group_ids != NO_GROUP).squeeze(1)
    sorted_groups, order = torch.sort(history.group_ids[grouped_rows], stable=True)
    rows = grouped_rows[order]  # by (group, time)
    keys, counts = torch.unique_consecutive(sorted_groups, return_counts=True)
    s = keys.numel()
    bounds = lengths_to_offsets(counts)
    segment = torch.repeat_interleave(torch.arange(s), counts, output_size=rows.numel())
    nb, f = spec.num_behaviors, history.numeric.shape[1]
    type_counts = torch.zeros(s * nb).index_add(
        0, segment * nb + history.behavior_ids[rows], torch.ones(rows.numel())
    )
    numeric_rows = history.numeric[rows].to(torch.float32)
    if f and s:
        numeric_sum = torch.segment_reduce(numeric_rows, "sum", lengths=counts, axis=0)
        numeric_max = torch.segment_reduce(numeric_rows, "max", lengths=counts, axis=0)
    else:
        numeric_sum = numeric_max = torch.zeros(s, f)
    last_row, first_row = rows[bounds[1:] - 1], rows[bounds[:-1]]
    age = history.age.to(torch.float32)
    min_age = torch.full((s,), float("inf")).scatter_reduce(0, segment, age[rows], reduce="amin")
    start = torch.maximum(bounds[:-1], bounds[1:] - w)
    slot = start.unsqueeze(1) + torch.arange(w)
    in_window = slot < bounds[1:].unsqueeze(1)
    recent = torch.where(in_window, rows[slot.clamp(max=max(rows.numel() - 1, 0))], -1)
    retained = recent[in_window].unique()  # sorted rows of the history
    recent = torch.where(in_window, torch.searchsorted(retained, recent), -1)
    state = DMGINServingState(
        length=torch.tensor(n, dtype=torch.int64),
        keys=keys,
        count=counts,
        type_counts=type_counts.view(s, nb),
        numeric_sum=numeric_sum,
        numeric_max=numeric_max,
        last_position=last_row,
        last_age=age[last_row],
        first_age=age[first_row],
        min_age=min_age,
        recent=recent,
        embeddings=history.embeddings[retained],
        behavior_embeddings=history.behavior_embeddings[retained],
        age=age[retained],
        pooled=torch.zeros(s, enc.config.hidden_dim),
        groups=torch.zeros(0),
        group_mask=torch.zeros(0, dtype=torch.bool),
        **_item_statistics(enc, history),
    )
    return _finish(enc, state, torch.arange(s))


@torch.no_grad()
def append_dmgin_events(enc: DMGIN, state: DMGINServingState, events: History) -> DMGINServingState:
    """``state`` after the k behaviors of ``events`` (B = 1, oldest -> newest, ages relative to
    the state's reference time): O(k) statistics updates, the intra-group transformer on the
    touched groups, then the G kept groups' vectors and the HSTU. Returns a new state."""
    _check_one_user(events)
    w, nb = _window(enc), enc.spec.num_behaviors
    k = events.group_ids.numel()
    if k == 0:
        return state
    if events.numeric.shape[1] != state.numeric_sum.shape[1]:
        raise ValueError(
            f"events have {events.numeric.shape[1]} numeric fields, the state "
            f"{state.numeric_sum.shape[1]}"
        )
    if int(events.behavior_ids.min()) < 0 or int(events.behavior_ids.max()) >= nb:
        raise ValueError(f"behavior ids must be in [0, {nb})")
    new = {name: tensor.clone() for name, tensor in state.to_dict().items()}
    slot_of = {int(key): i for i, key in enumerate(new["keys"].tolist())}
    r0 = new["embeddings"].shape[0]
    new["embeddings"] = torch.cat([new["embeddings"], events.embeddings])
    new["behavior_embeddings"] = torch.cat([new["behavior_embeddings"], events.behavior_embeddings])
    new["age"] = torch.cat([new["age"], events.age.to(torch.float32)])
    position = int(new["length"])
    touched: set[int] = set()
    f = events.numeric.shape[1]
    if enc.item_stats_dim:
        _append_items(new, events, nb)
    for i, (group, behavior) in enumerate(
        zip(events.group_ids.tolist(), events.behavior_ids.tolist(), strict=True)
    ):
        p, position = position, position + 1
        if group == NO_GROUP:
            continue
        age = events.age[i].to(torch.float32)
        numeric = events.numeric[i].to(torch.float32)
        s = slot_of.get(group)
        if s is None:
            s = slot_of[group] = new["keys"].numel()
            grow = {
                "keys": torch.tensor([group]),
                "count": torch.zeros(1, dtype=torch.int64),
                "type_counts": torch.zeros(1, nb),
                "numeric_sum": torch.zeros(1, f),
                "numeric_max": torch.full((1, f), float("-inf")),
                "last_position": torch.zeros(1, dtype=torch.int64),
                "last_age": torch.zeros(1),
                "first_age": age.view(1),
                "min_age": torch.full((1,), float("inf")),
                "recent": torch.full((1, w), -1, dtype=torch.int64),
                "pooled": torch.zeros(1, new["pooled"].shape[1]),
            }
            for name, row in grow.items():
                new[name] = torch.cat([new[name], row])
        new["count"][s] += 1
        new["type_counts"][s, behavior] += 1.0
        new["numeric_sum"][s] += numeric
        new["numeric_max"][s] = torch.maximum(new["numeric_max"][s], numeric)
        new["last_position"][s] = p
        new["last_age"][s] = age
        new["min_age"][s] = torch.minimum(new["min_age"][s], age)
        window = new["recent"][s]
        filled = int((window >= 0).sum())
        if filled == w:
            window = torch.cat([window[1:], window.new_full((1,), r0 + i)])
        else:
            window[filled] = r0 + i
        new["recent"][s] = window
        touched.add(s)
    new["length"] = torch.tensor(position, dtype=torch.int64)
    grown = DMGINServingState.from_dict(new)
    return _finish(enc, _compact(grown), torch.tensor(sorted(touched), dtype=torch.int64))


def _append_items(new: dict[str, torch.Tensor], events: History, nb: int) -> None:
    """Fold ``events`` into the per-item statistics of ``new`` (in place; item 0 skipped)."""
    slot_of = {int(key): i for i, key in enumerate(new["item_keys"].tolist())}
    f = events.numeric.shape[1]
    for i, (item, behavior) in enumerate(
        zip(events.item_ids.tolist(), events.behavior_ids.tolist(), strict=True)
    ):
        if item == 0:
            continue
        s = slot_of.get(item)
        if s is None:
            s = slot_of[item] = new["item_keys"].numel()
            grow = {
                "item_keys": torch.tensor([item]),
                "item_count": torch.zeros(1, dtype=torch.int64),
                "item_type_counts": torch.zeros(1, nb),
                "item_numeric_sum": torch.zeros(1, f),
                "item_min_age": torch.full((1,), float("inf")),
            }
            for name, row in grow.items():
                new[name] = torch.cat([new[name], row])
        new["item_count"][s] += 1
        new["item_type_counts"][s, behavior] += 1.0
        new["item_numeric_sum"][s] += events.numeric[i].to(torch.float32)
        new["item_min_age"][s] = torch.minimum(
            new["item_min_age"][s], events.age[i].to(torch.float32)
        )


def _compact(state: DMGINServingState) -> DMGINServingState:
    """Drop retained rows that left every group's window (they are never read again)."""
    valid = state.recent >= 0
    kept = state.recent[valid].unique()
    if kept.numel() == state.embeddings.shape[0]:
        return state
    state.recent = torch.where(valid, torch.searchsorted(kept, state.recent), -1)
    state.embeddings = state.embeddings[kept]
    state.behavior_embeddings = state.behavior_embeddings[kept]
    state.age = state.age[kept]
    return state


def _last(recent: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(rows [*, k], mask [*, k])``: the k newest entries of left-aligned windows."""
    filled = (recent >= 0).sum(dim=-1, keepdim=True)
    slot = (filled - k).clamp(min=0) + torch.arange(k)
    mask = slot < filled
    rows = recent.gather(-1, slot.clamp(max=recent.shape[-1] - 1))
    return torch.where(mask, rows, 0), mask


def _log1p_days(seconds: torch.Tensor) -> torch.Tensor:
    return torch.log1p((seconds / SECONDS_PER_DAY).clamp(min=0.0))


def _finish(enc: DMGIN, state: DMGINServingState, touched: torch.Tensor) -> DMGINServingState:
    """Pool the ``touched`` kept groups, then rebuild the G group vectors and run the HSTU."""
    cfg, h = enc.config, enc.config.hidden_dim
    g = cfg.max_groups
    if enc.group_attention is None:
        state.groups, state.group_mask = torch.zeros(1, h), torch.zeros(1, dtype=torch.bool)
        return state
    kept = torch.argsort(state.last_position)[-g:]  # oldest -> newest by last behavior
    v = kept.numel()
    if enc.intra is not None:
        todo = kept[torch.isin(kept, touched)]
        if todo.numel():
            rows, mask = _last(state.recent[todo], cfg.max_per_group)
            width = max(int(mask.sum(dim=1).max()), 1)
            rows, mask = rows[:, :width], mask[:, :width]
            slots = enc.behavior_features(
                state.embeddings, state.behavior_embeddings, state.age, rows, mask
            )
            state.pooled[todo] = masked_mean(enc.intra(slots, mask), mask)
    group_mask = torch.zeros(g, dtype=torch.bool)
    group_mask[:v] = True
    parts = []
    if enc.intra is not None:
        parts.append(_pad(state.pooled[kept], g))
    if enc.stats_mlp is not None:
        count = state.count[kept].to(torch.float32)
        newest, oldest = state.last_age[kept], state.first_age[kept]
        stats = torch.cat(
            [
                torch.log1p(state.type_counts[kept]),
                torch.log1p(count).unsqueeze(1),
                _log1p_days(newest).unsqueeze(1),
                _log1p_days(oldest).unsqueeze(1),
                _log1p_days(oldest - newest).unsqueeze(1),
                (count / state.length.to(torch.float32)).unsqueeze(1),
                state.numeric_sum[kept] / count.unsqueeze(1),
                state.numeric_max[kept],
            ],
            dim=1,
        )
        parts.append(enc.stats_mlp(_pad(stats, g)))
    if enc.group_embedding is not None:
        parts.append(enc.group_embedding(_pad(state.keys[kept], g)))
    assert enc.group_proj is not None
    groups = enc.group_proj(torch.cat(parts, dim=-1)) * group_mask.unsqueeze(-1)
    groups, mask = groups.unsqueeze(0), group_mask.unsqueeze(0)
    times = -_pad(state.last_age[kept], g).unsqueeze(0)
    for layer in enc.hstu:
        groups = layer(groups, mask, times)
    state.groups, state.group_mask = groups[0], group_mask
    return state


def _pad(x: torch.Tensor, g: int) -> torch.Tensor:
    """``x [V, *]`` zero-padded to ``[G, *]``."""
    return torch.cat([x, x.new_zeros(g - x.shape[0], *x.shape[1:])])


def _find(keys: torch.Tensor, wanted: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(found [C], slot [C])`` of each wanted key in the unsorted ``keys [S]`` (slot 0 where
    not found)."""
    s = keys.numel()
    if not s:
        return torch.zeros_like(wanted, dtype=torch.bool), torch.zeros_like(wanted)
    sorted_keys, perm = torch.sort(keys)
    at = torch.searchsorted(sorted_keys, wanted).clamp(max=s - 1)
    return sorted_keys[at] == wanted, perm[at]


def _matched_statistics(
    enc: DMGIN,
    found: torch.Tensor,
    slot: torch.Tensor,
    count: torch.Tensor,
    tables: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
) -> torch.Tensor:
    """``[C, num_behaviors + F + 1]``: :meth:`DMGIN._statistics_from` of the rows ``slot`` of
    ``tables`` (counts per behavior type ``[S, nb]``, numeric sums ``[S, F]``, smallest age
    ``[S]``) where ``found``, of no behavior elsewhere or when the tables are empty."""
    type_counts, numeric_sum, min_age = tables
    if not type_counts.shape[0]:  # no rows (``found`` is all False): gather a dummy one
        type_counts = type_counts.new_zeros(1, type_counts.shape[1])
        numeric_sum = numeric_sum.new_zeros(1, numeric_sum.shape[1])
        min_age = min_age.new_zeros(1)
    return enc._statistics_from(
        torch.where(found[:, None], type_counts[slot], 0.0),
        torch.where(found[:, None], numeric_sum[slot], 0.0),
        torch.where(found, min_age[slot], float("inf")),
        count,
    )


def _item_part(enc: DMGIN, state: DMGINServingState, item_ids: torch.Tensor | None) -> torch.Tensor:
    """``[C, num_behaviors + F + 1]``: the candidate items' own statistics."""
    if item_ids is None:
        raise ValueError("this DMGIN reads the candidate item's statistics: pass item_ids")
    found, slot = _find(state.item_keys, searched_groups(item_ids))
    counts = state.item_count if state.item_keys.numel() else torch.zeros(1, dtype=torch.int64)
    count = torch.where(found, counts[slot], 0).to(torch.float32)
    tables = (state.item_type_counts, state.item_numeric_sum, state.item_min_age)
    return _matched_statistics(enc, found, slot, count, tables)


@torch.no_grad()
def score_dmgin_state(
    enc: DMGIN,
    state: DMGINServingState,
    embeddings: torch.Tensor,
    group_ids: torch.Tensor,
    item_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """``[C, output_dim]`` for C candidates (``embeddings [C, D]``, ``group_ids [C]``, and
    ``item_ids [C]`` when the encoder reads the candidate item's statistics): the rows
    :meth:`DMGIN.score_candidates` gives for this user, from the state alone."""
    c = embeddings.shape[0]
    outputs = []
    if enc.group_attention is not None:
        attended = enc.group_attention(
            embeddings.unsqueeze(0), state.groups.unsqueeze(0), state.group_mask.unsqueeze(0)
        )
        outputs.append(attended[0])
    if enc.target_attention is not None or enc.target_stats_dim or enc.item_stats_dim:
        s = state.keys.numel()
        found, segment = _find(state.keys, searched_groups(group_ids))
        count = torch.where(found, state.count[segment] if s else 0, 0).to(torch.float32)
        parts = []
        if enc.target_attention is not None:
            # candidates of one group read the same K behaviors: project them, and the
            # attention's keys and values, once per group (C = 1,000 candidates fall in at most
            # G + 1 groups), not once per candidate
            k = enc.config.target_group_max_len
            if s:
                key = torch.where(found, segment, s)  # s: a group the user never touched
                shared, key_of = torch.unique(key, return_inverse=True)
                first = torch.full_like(shared, c).scatter_reduce(
                    0, key_of, torch.arange(c), "amin"
                )
                rows, mask = _last(state.recent[segment[first]], k)
                mask = mask & found[first].unsqueeze(1)
            else:
                key_of = torch.zeros(c, dtype=torch.int64)
                rows = torch.zeros(1, k, dtype=torch.int64)
                mask = rows.bool()
            kept = enc.behavior_features(
                state.embeddings, state.behavior_embeddings, state.age, rows, mask
            )
            attended = enc.target_attention.forward_shared(embeddings, kept, mask, key_of)
            parts += [attended, torch.log1p(count)[:, None]]
        if enc.target_stats_dim:
            tables = (state.type_counts, state.numeric_sum, state.min_age)
            parts.append(_matched_statistics(enc, found, segment, count, tables))
        if enc.item_stats_dim:
            parts.append(_item_part(enc, state, item_ids))
        outputs.append(torch.cat(parts, dim=1))
    return torch.cat(outputs, dim=-1)
