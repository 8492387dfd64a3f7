"""SIMHard's and ETA's per-user serving states, appended to as new behaviors arrive.

* SIMHard: the user's behaviors indexed by search key (category or group), each key keeping its
  ``top_k`` most recent behaviors (all the ESU ever reads for a candidate of that key).
  Appending k behaviors is O(k); a candidate is one key lookup + the ESU over K rows.
* ETA: the SimHash signature of every behavior, computed once when the behavior arrives
  (ETA's point), with the rows the ESU may read; appending hashes only the new rows.

Both equal the encoder's ``forward_candidates`` on the whole history
(``tests/encoders/test_search_state.py``). Ages are seconds before the state's reference time,
as in ``components.encoders.dmgin_state``. One user per state (B = 1); S keys, R retained
rows, K kept per key, m hash bits, C candidates, D dims.

Example:
    >>> from components.encoders.base import EncoderSpec, take_history_rows
    >>> from components.encoders.example_inputs import random_history, random_query
    >>> from components.encoders.sim import SIMConfig, SIMHard
    >>> spec = EncoderSpec(embedding_dim=16, behavior_dim=4)
    >>> enc = SIMHard(spec, SIMConfig(top_k=4)).eval()
    >>> full = random_history(spec, [50], num_categories=5)
    >>> state = build_search_state(enc, take_history_rows(full, slice(0, 20), torch.tensor([20])))
    >>> state = append_search_events(enc, state, take_history_rows(full, slice(20, 50),
    ...                                                             torch.tensor([30])))
    >>> cands = random_query(spec, 1, candidates=6, num_categories=5)
    >>> got = score_search_state(enc, state, cands)
    >>> torch.allclose(got, enc.forward_candidates(cands, full)[0], atol=1e-5)
    True
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from components.encoders.base import History, Query, flatten_candidates, searched_groups
from components.encoders.eta import ETA
from components.encoders.sim import SIMHard
from components.ops import jagged
from components.ops.retrieval import hamming_topk, simhash_signatures

__all__ = ["SearchServingState", "append_search_events", "build_search_state", "score_search_state"]


@dataclass
class SearchServingState:
    """One user's SIMHard / ETA state (tensors only, so it serialises as a dict).

    Attributes:
        keys: ``[S]`` int64 search keys (SIMHard; empty for ETA).
        recent: ``[S, K]`` rows of the retained store, oldest -> newest, -1 where empty
            (SIMHard; ``[0, K]`` for ETA).
        signatures: ``[R, m]`` bool SimHash of every retained row (ETA; ``[R, 0]`` for SIMHard).
        embeddings, behavior_embeddings, age: ``[R, D]``, ``[R, D_b]``, ``[R]``.
    """

    keys: torch.Tensor
    recent: torch.Tensor
    signatures: torch.Tensor
    embeddings: torch.Tensor
    behavior_embeddings: torch.Tensor
    age: torch.Tensor

    def to_dict(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, tensors: dict[str, torch.Tensor]) -> SearchServingState:
        return cls(**{f.name: tensors[f.name] for f in fields(cls)})

    def history(self) -> History:
        """The retained rows as a one-user history (what the ESU reads)."""
        r = self.age.numel()
        ids = torch.zeros(r, dtype=torch.int64)
        return History(
            embeddings=self.embeddings,
            lengths=torch.tensor([r]),
            offsets=torch.tensor([0, r]),
            item_ids=ids,
            category_ids=ids,
            group_ids=ids,
            behavior_ids=ids,
            age=self.age,
            numeric=torch.zeros(r, 0),
            behavior_embeddings=self.behavior_embeddings,
        )


def _history_keys(enc: SIMHard, history: History) -> torch.Tensor:
    return history.category_ids if enc.config.search_key == "category" else history.group_ids


def _check(history: History) -> None:
    if history.lengths.numel() != 1 or history.embedding_rows is not None:
        raise ValueError("a serving state holds one user with one embedding per behavior")


@torch.no_grad()
def build_search_state(enc: SIMHard | ETA, history: History) -> SearchServingState:
    """The state of one user's whole ``history`` (B = 1)."""
    _check(history)
    k = enc.config.top_k
    age = history.age.to(torch.float32)
    if isinstance(enc, ETA):
        return SearchServingState(
            keys=torch.zeros(0, dtype=torch.int64),
            recent=torch.zeros(0, k, dtype=torch.int64),
            signatures=simhash_signatures(history.embeddings, enc.planes),
            embeddings=history.embeddings,
            behavior_embeddings=history.behavior_embeddings,
            age=age,
        )
    keys = _history_keys(enc, history)
    sorted_keys, order = torch.sort(keys, stable=True)
    unique, counts = torch.unique_consecutive(sorted_keys, return_counts=True)
    bounds = jagged.lengths_to_offsets(counts)
    slot = torch.maximum(bounds[:-1], bounds[1:] - k).unsqueeze(1) + torch.arange(k)
    valid = slot < bounds[1:].unsqueeze(1)
    recent = torch.where(valid, order[slot.clamp(max=max(order.numel() - 1, 0))], -1)
    retained = recent[valid].unique()
    return SearchServingState(
        keys=unique,
        recent=torch.where(valid, torch.searchsorted(retained, recent), -1),
        signatures=torch.zeros(retained.numel(), 0, dtype=torch.bool),
        embeddings=history.embeddings[retained],
        behavior_embeddings=history.behavior_embeddings[retained],
        age=age[retained],
    )


@torch.no_grad()
def append_search_events(
    enc: SIMHard | ETA, state: SearchServingState, events: History
) -> SearchServingState:
    """``state`` after the behaviors of ``events`` (B = 1, oldest -> newest); a new state."""
    _check(events)
    r0 = state.age.numel()
    embeddings = torch.cat([state.embeddings, events.embeddings])
    behavior = torch.cat([state.behavior_embeddings, events.behavior_embeddings])
    age = torch.cat([state.age, events.age.to(torch.float32)])
    if isinstance(enc, ETA):
        signatures = torch.cat(
            [state.signatures, simhash_signatures(events.embeddings, enc.planes)]
        )
        return SearchServingState(state.keys, state.recent, signatures, embeddings, behavior, age)
    keys, recent = state.keys.clone(), state.recent.clone()
    slot_of = {int(key): i for i, key in enumerate(keys.tolist())}
    k = enc.config.top_k
    for i, key in enumerate(_history_keys(enc, events).tolist()):
        s = slot_of.get(key)
        if s is None:
            s = slot_of[key] = keys.numel()
            keys = torch.cat([keys, torch.tensor([key])])
            recent = torch.cat([recent, torch.full((1, k), -1, dtype=torch.int64)])
        filled = int((recent[s] >= 0).sum())
        if filled == k:
            recent[s] = torch.cat([recent[s, 1:], recent.new_full((1,), r0 + i)])
        else:
            recent[s, filled] = r0 + i
    valid = recent >= 0
    kept = recent[valid].unique()  # drop rows no key window holds any more
    return SearchServingState(
        keys=keys,
        recent=torch.where(valid, torch.searchsorted(kept, recent), -1),
        signatures=torch.zeros(kept.numel(), 0, dtype=torch.bool),
        embeddings=embeddings[kept],
        behavior_embeddings=behavior[kept],
        age=age[kept],
    )


@torch.no_grad()
def score_search_state(
    enc: SIMHard | ETA, state: SearchServingState, candidates: Query
) -> torch.Tensor:
    """``[C, output_dim]`` for one user's candidates (fields ``[1, C, ...]``)."""
    flat = flatten_candidates(candidates)
    c = flat.item_ids.numel()
    history = state.history()
    if isinstance(enc, ETA):
        rows, lengths = jagged.repeat_segments(history.offsets, c)
        index, mask = hamming_topk(
            state.signatures[rows],
            jagged.lengths_to_offsets(lengths),
            simhash_signatures(flat.embeddings, enc.planes),
            enc.config.top_k,
        )
        index = jagged.gather_padded(rows, index, mask)
        return enc.esu(flat, history, index, mask)
    if enc.config.search_key == "category":
        wanted = flat.category_ids
    else:
        wanted = searched_groups(flat.group_ids)
    s, k = state.keys.numel(), enc.config.top_k
    if s == 0:
        index = torch.zeros(c, k, dtype=torch.int64)
        return enc.esu(flat, history, index, index.bool())
    sorted_keys, perm = torch.sort(state.keys)
    at = torch.searchsorted(sorted_keys, wanted).clamp(max=s - 1)
    found = sorted_keys[at] == wanted
    # candidates of one key read the same K behaviors: one window (and its attention keys)
    # per distinct key, not per candidate
    shared, key_of = torch.unique(torch.where(found, perm[at], s), return_inverse=True)
    first = torch.full_like(shared, c).scatter_reduce(0, key_of, torch.arange(c), "amin")
    window = state.recent[perm[at][first]]
    mask = (window >= 0) & found[first].unsqueeze(1)
    return enc.esu(flat, history, torch.where(mask, window, 0), mask, key_of)
