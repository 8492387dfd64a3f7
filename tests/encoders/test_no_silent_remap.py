"""No silent remaps: item ids past the item -> group table raise; group 0 is no group."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from components import LifelongCTRModel, ModelConfig, Vocab
from components.ops import group_behaviors, group_behaviors_reference, lengths_to_offsets
from pipelines.data.batch import random_batch

VOCAB = Vocab(users=10, items=50, categories=6, behaviors=3, num_numeric=1)


def cluster_model(table_items: int, encoder: str = "DMGIN") -> LifelongCTRModel:
    torch.manual_seed(0)
    table = torch.arange(table_items) % 4 + 1
    table[::5] = 0  # items without a content cluster
    config = ModelConfig(encoder=encoder, group_key="cluster", embedding_dim=4, over_arch=[8])
    return LifelongCTRModel(config, VOCAB, item_to_group=table).eval()


def batch():  # noqa: ANN201
    return random_batch(
        [7, 0, 12], users=10, items=50, categories=6, behaviors=3, num_numeric=1, seed=3
    )


def test_a_table_covering_every_item_works() -> None:
    with torch.no_grad():
        assert torch.isfinite(cluster_model(50)(batch()).logits).all()


@pytest.mark.parametrize("encoder", ["DMGIN", "SIMHard"])
def test_item_ids_past_the_group_table_raise(encoder: str) -> None:
    model = cluster_model(30, encoder)  # the table knows items 0..29 only
    with pytest.raises(ValueError, match=r"outside the item -> group table \(30 items"):
        with torch.no_grad():
            model(batch())


def test_negative_item_ids_raise() -> None:
    from components.head import groups_of_items

    with pytest.raises(ValueError, match="item id -1 is outside"):
        groups_of_items(torch.arange(5), torch.tensor([0, -1, 3]))
    assert groups_of_items(torch.arange(5) * 2, torch.tensor([4, 0])).tolist() == [8, 0]


@settings(max_examples=40, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 15), min_size=1, max_size=4),
    num_groups=st.integers(1, 5),
    max_groups=st.integers(1, 4),
    max_per_group=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_grouping_skips_group_zero_like_its_loop_twin(
    lengths: list[int], num_groups: int, max_groups: int, max_per_group: int, seed: int
) -> None:
    g = torch.Generator().manual_seed(seed)
    n = sum(lengths)
    args = (
        torch.randint(0, num_groups, (n,), generator=g),  # 0 included
        lengths_to_offsets(torch.tensor(lengths)),
        torch.randint(0, 3, (n,), generator=g),
        torch.rand(n, generator=g) * 1e6,
        torch.rand(n, 2, generator=g),
        max_groups,
        max_per_group,
        3,
    )
    fast = group_behaviors(*args, skip_group=0)
    slow = group_behaviors_reference(*args, skip_group=0)
    assert not bool((fast.group_ids[fast.group_mask] == 0).any())
    for field in ("behavior_index", "behavior_mask", "group_ids", "group_mask"):
        assert torch.equal(getattr(fast, field), getattr(slow, field)), field
    assert torch.equal(fast.group_last_position, slow.group_last_position)
    torch.testing.assert_close(fast.stats, slow.stats)
