"""Random jagged Query/History inputs shared by the encoder tests."""

from __future__ import annotations

import dataclasses

import torch

from components.encoders.base import EncoderSpec, History, Query
from components.ops.jagged import lengths_to_offsets

D, DB, NB, F, NG = 16, 4, 4, 2, 12
SPEC = EncoderSpec(embedding_dim=D, behavior_dim=DB, num_behaviors=NB, num_numeric=F, num_groups=NG)


def make_inputs(lengths: list[int], seed: int = 0, num_groups: int = NG) -> tuple[Query, History]:
    g = torch.Generator().manual_seed(seed)
    n, b = sum(lengths), len(lengths)
    lengths_t = torch.tensor(lengths, dtype=torch.int64)
    age = torch.cat(
        [torch.sort(torch.rand(k, generator=g) * 1e7, descending=True).values for k in lengths]
    )
    history = History(
        embeddings=torch.randn(n, D, generator=g, requires_grad=True),
        lengths=lengths_t,
        offsets=lengths_to_offsets(lengths_t),
        item_ids=torch.randint(1, 50, (n,), generator=g),
        category_ids=torch.randint(1, 5, (n,), generator=g),
        group_ids=torch.randint(1, num_groups, (n,), generator=g),
        behavior_ids=torch.randint(1, NB, (n,), generator=g),
        age=age + 1.0,
        numeric=torch.rand(n, F, generator=g),
        behavior_embeddings=torch.randn(n, DB, generator=g),
    )
    query = Query(
        embeddings=torch.randn(b, D, generator=g, requires_grad=True),
        item_ids=torch.randint(1, 50, (b,), generator=g),
        category_ids=torch.randint(1, 5, (b,), generator=g),
        group_ids=torch.randint(1, num_groups, (b,), generator=g),
    )
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
