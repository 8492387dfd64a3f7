"""Random jagged Query/History inputs shared by the encoder tests."""

from __future__ import annotations

import dataclasses

from components.encoders.base import EncoderSpec, History, Query, take_history_rows
from components.encoders.example_inputs import random_history, random_query

D, DB, NB, F, NG = 16, 4, 4, 2, 12
SPEC = EncoderSpec(embedding_dim=D, behavior_dim=DB, num_behaviors=NB, num_numeric=F, num_groups=NG)


def make_inputs(lengths: list[int], seed: int = 0, num_groups: int = NG) -> tuple[Query, History]:
    """Contract-valid random inputs; both embeddings record gradients."""
    spec = dataclasses.replace(SPEC, num_groups=num_groups)
    vocab = {"num_items": 50, "num_categories": 5}
    history = random_history(spec, lengths, seed=seed, requires_grad=True, **vocab)
    query = random_query(spec, len(lengths), seed=seed + 7919, requires_grad=True, **vocab)
    return query, history


def select(query: Query, history: History, i: int) -> tuple[Query, History]:
    """Sample i alone, as a batch of one."""
    lo, hi = int(history.offsets[i]), int(history.offsets[i + 1])
    rows = slice(lo, hi)
    q = Query(*(getattr(query, f.name)[i : i + 1] for f in dataclasses.fields(Query)))
    h = take_history_rows(history, rows, history.lengths[i : i + 1])
    return q, h


# small windows, so that every encoder's selection (top-K, last-K, G groups x M) truncates
SMALL_WINDOWS: dict[str, dict] = {
    "DIN": {"max_len": 6},
    "DINFull": {},
    "SIMHard": {"top_k": 3},
    "SIMSoft": {"top_k": 3},
    "ETA": {"top_k": 3},
    "CiUBM": {"top_k": 3},
    "DMGIN": {"max_groups": 3, "max_per_group": 2, "target_group_max_len": 3},
    "TWIN": {"top_k": 3},
    "SDIM": {"num_hashes": 4, "hash_bits": 2},
    "TWINV2": {"branching": (2, 2)},
}
