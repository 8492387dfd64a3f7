"""The log2-day age buckets against a hand table: bucket 0 under a day (and for negative ages),
bucket k for [2^(k-1), 2^k) days, the last bucket open-ended; 16 buckets by default."""

from __future__ import annotations

import pytest
import torch

from components.layers.time_buckets import SECONDS_PER_DAY, TimeIntervalEmbedding, age_buckets

DAY = SECONDS_PER_DAY


@pytest.mark.parametrize(
    ("days", "bucket"),
    [
        (-3.0, 0),  # a behavior "in the future" (clock skew) counts as now
        (0.0, 0),
        (0.999, 0),
        (1.0, 1),  # exactly one day opens bucket 1
        (1.5, 1),
        (2.0, 2),
        (3.99, 2),
        (4.0, 3),
        (2.0**13, 14),
        (2.0**14, 15),  # the last of 16 buckets ...
        (2.0**30, 15),  # ... is open-ended
    ],
)
def test_age_buckets_follow_the_log2_day_table(days: float, bucket: int) -> None:
    assert int(age_buckets(torch.tensor([days * DAY]), 16)[0]) == bucket


def test_a_smaller_table_clamps_at_its_own_last_bucket() -> None:
    ages = torch.tensor([0.0, 1.0, 2.0, 4.0, 100.0]) * DAY
    assert age_buckets(ages, 3).tolist() == [0, 1, 2, 2, 2]


def test_default_embedding_has_sixteen_buckets() -> None:
    embedding = TimeIntervalEmbedding(4)
    assert embedding.num_buckets == 16 and embedding.embedding.num_embeddings == 16
    oldest = embedding(torch.tensor([2.0**40 * DAY]))  # beyond every bucket: the last row
    assert torch.equal(oldest[0], embedding.embedding.weight[15])
