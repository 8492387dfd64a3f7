"""Random jagged Query/History inputs shared by the encoder tests."""

from __future__ import annotations

import dataclasses

from components.encoders.base import EncoderSpec, History, Query
from components.encoders.example_inputs import random_history, random_query
from components.ops.jagged import lengths_to_offsets

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
    lengths = history.lengths[i : i + 1]
    h = History(
        embeddings=history.embeddings[rows],
        lengths=lengths,
        offsets=lengths_to_offsets(lengths),
        item_ids=history.item_ids[rows],
        category_ids=history.category_ids[rows],
        group_ids=history.group_ids[rows],
        behavior_ids=history.behavior_ids[rows],
        age=history.age[rows],
        numeric=history.numeric[rows],
        behavior_embeddings=history.behavior_embeddings[rows],
    )
    return q, h
