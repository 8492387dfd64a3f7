"""Time-interval embedding: log2-day buckets of a behavior's age (SIM's "timeinfo")."""

from __future__ import annotations

import torch
from torch import nn

SECONDS_PER_DAY = 86400.0


def age_buckets(age_seconds: torch.Tensor, num_buckets: int) -> torch.Tensor:
    """Bucket 0 = under a day, bucket k = [2^(k-1), 2^k) days, the last bucket open-ended."""
    days = age_seconds.clamp_min(0) / SECONDS_PER_DAY
    bucket = torch.floor(torch.log2(days.clamp_min(1.0))).long() + (days >= 1.0).long()
    return bucket.clamp(0, num_buckets - 1)


class TimeIntervalEmbedding(nn.Module):
    """``age [...]`` seconds -> ``[..., dim]`` learned embedding of its log2-day bucket.

    Example:
        >>> TimeIntervalEmbedding(8)(torch.tensor([10.0, 86400.0 * 3])).shape
        torch.Size([2, 8])
    """

    def __init__(self, dim: int, num_buckets: int = 16) -> None:
        super().__init__()
        self.num_buckets = num_buckets
        self.embedding = nn.Embedding(num_buckets, dim)

    def forward(self, age_seconds: torch.Tensor) -> torch.Tensor:
        return self.embedding(age_buckets(age_seconds, self.num_buckets))
