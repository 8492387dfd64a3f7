"""DMGIN's configuration contract: every bound and every switch combination it refuses, each
condition alone, with the exact message."""

from __future__ import annotations

import re

import pytest

from components.encoders.dmgin import DMGINConfig

WINDOW_MESSAGE = "max_groups, max_per_group, hidden_dim, target_group_max_len must be >= 1"
READS_MESSAGE = (
    "DMGIN needs use_group_attention, use_target_group_attention, "
    "use_target_group_statistics or use_target_item_statistics"
)
GROUP_MESSAGE = "group attention needs statistics, intra-group transformer or group embedding"
NO_READS = {
    "use_group_attention": False,
    "use_target_group_attention": False,
    "use_target_group_statistics": False,
    "use_target_item_statistics": False,
}
NO_GROUP_PARTS = {
    "use_statistics": False,
    "use_intra_group_transformer": False,
    "use_group_embedding": False,
}


@pytest.mark.parametrize(
    "field", ["max_groups", "max_per_group", "hidden_dim", "target_group_max_len"]
)
def test_each_window_must_be_positive(field: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(WINDOW_MESSAGE)}$"):
        DMGINConfig(**{field: 0})
    DMGINConfig(**{field: 1})


@pytest.mark.parametrize("kept", sorted(NO_READS))
def test_any_one_candidate_read_is_enough(kept: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(READS_MESSAGE)}$"):
        DMGINConfig(**NO_READS)
    config = DMGINConfig(**{**NO_READS, kept: True})
    assert getattr(config, kept)


@pytest.mark.parametrize("kept", sorted(NO_GROUP_PARTS))
def test_group_attention_needs_any_one_group_part(kept: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(GROUP_MESSAGE)}$"):
        DMGINConfig(**NO_GROUP_PARTS)
    DMGINConfig(**{**NO_GROUP_PARTS, kept: True})
    DMGINConfig(**NO_GROUP_PARTS, use_group_attention=False)  # nothing reads the group slots
