"""The shared encoder contract's helpers (``components/encoders/base.py``): row translation for
planned lookups, the no-group search key, and the batch reshapers every encoder relies on."""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch

from components.encoders.base import (
    NO_GROUP,
    embedding_index,
    flatten_candidates,
    repeat_history,
    searched_groups,
    take_history_rows,
)
from components.encoders.example_inputs import random_query

from .inputs import SPEC, make_inputs


def test_embedding_index_translates_rows_and_clamps_masked_slots() -> None:
    index = torch.tensor([[0, 3, 4], [-1, 2, 9]])
    assert torch.equal(embedding_index(None, index), index)
    rows = torch.tensor([5, 1, 6, 2, 0])  # behavior i is looked-up row rows[i]
    got = embedding_index(rows, index)
    assert torch.equal(got, torch.tensor([[5, 2, 0], [5, 6, 0]]))  # -1 -> row of 0, 9 -> of 4
    assert got.dtype == torch.int64
    # one behavior: every slot reads its row; no behavior: every slot reads row 0
    assert torch.equal(embedding_index(torch.tensor([3]), index), torch.full((2, 3), 3))
    none = embedding_index(torch.zeros(0, dtype=torch.int64), index)
    assert torch.equal(none, torch.zeros_like(index))


def test_history_embedding_index_reads_its_own_rows() -> None:
    _, history = make_inputs([3, 2])
    index = torch.tensor([[0, 4], [2, 1]])
    assert torch.equal(history.embedding_index(index), index)
    rows = torch.tensor([4, 3, 2, 1, 0])
    planned = dataclasses.replace(history, embedding_rows=rows)
    assert torch.equal(planned.embedding_index(index), rows[index])


def test_no_group_searches_for_minus_one_and_other_groups_for_themselves() -> None:
    groups = torch.tensor([0, 1, 2, 0, 7])
    assert NO_GROUP == 0
    assert torch.equal(searched_groups(groups), torch.tensor([-1, 1, 2, -1, 7]))


def test_flatten_candidates_is_user_major_for_every_field() -> None:
    grid = random_query(SPEC, 2, candidates=3, num_items=50, num_categories=5, seed=3)
    flat = flatten_candidates(grid)
    for field in ("item_ids", "category_ids", "group_ids"):
        assert torch.equal(getattr(flat, field), getattr(grid, field).reshape(6)), field
    assert torch.equal(flat.embeddings, grid.embeddings.reshape(6, -1))
    assert torch.equal(flat.item_ids[3:], grid.item_ids[1])


def test_take_and_repeat_history_carry_every_field() -> None:
    _, history = make_inputs([3, 0, 2], seed=1)
    rows = torch.tensor([4, 0, 1])
    taken = take_history_rows(history, rows, torch.tensor([1, 2]))
    assert taken.lengths.tolist() == [1, 2] and taken.offsets.tolist() == [0, 1, 3]
    per_row = ("embeddings", "item_ids", "category_ids", "group_ids", "behavior_ids", "age",
               "numeric", "behavior_embeddings")  # fmt: skip
    for field in per_row:
        assert torch.equal(getattr(taken, field), getattr(history, field)[rows]), field
    twice = repeat_history(history, 2)
    assert twice.lengths.tolist() == [3, 3, 0, 0, 2, 2]
    order = torch.tensor([0, 1, 2, 0, 1, 2, 3, 4, 3, 4])
    for field in per_row:
        assert torch.equal(getattr(twice, field), getattr(history, field)[order]), field
    planned = dataclasses.replace(history, embedding_rows=torch.arange(5))
    message = "take_history_rows needs one embedding per behavior (embedding_rows)"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        take_history_rows(planned, rows, torch.tensor([3]))
