"""Learning-rate warmup and decay, applied to every parameter group (fused sparse and dense).

The factor at step ``t`` (steps already taken) multiplies each group's base rate:

* warmup: ``(t + 1) / warmup_steps`` for ``t < warmup_steps`` (linear from 1/warmup to 1);
* then ``decay``: ``none`` (1), ``linear`` (1 -> ``min_factor`` at ``total_steps``) or ``cosine``
  (half a cosine from 1 to ``min_factor`` at ``total_steps``).

It is a pure function of the global step, so a resumed run continues the same schedule. The
fused embedding optimizers read their rate from their parameter group at each ``step()``
(TorchRec's ``EmbeddingFusedOptimizer``), so the rate set after step t is the one step t + 1's
in-backward update uses; the dense optimizer reads it at its own ``step()``.

Example:
    >>> s = LrSchedule(warmup_steps=4, decay="linear", total_steps=12, min_factor=0.0)
    >>> [round(s.factor(t), 3) for t in (0, 3, 4, 8, 12, 20)]
    [0.25, 1.0, 1.0, 0.5, 0.0, 0.0]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

DECAYS = ("none", "linear", "cosine")


@dataclass(frozen=True)
class LrSchedule:
    warmup_steps: int = 0
    decay: str = "none"
    total_steps: int = 0
    min_factor: float = 0.0

    def __post_init__(self) -> None:
        if self.decay not in DECAYS:
            raise ValueError(f"decay must be one of {DECAYS}, got {self.decay!r}")
        if self.warmup_steps < 0 or self.total_steps < 0:
            raise ValueError("warmup_steps and total_steps must be >= 0")
        if not 0.0 <= self.min_factor <= 1.0:
            raise ValueError(f"min_factor must be in [0, 1], got {self.min_factor}")

    def factor(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.decay == "none" or self.total_steps <= self.warmup_steps:
            return 1.0
        progress = min(1.0, (step - self.warmup_steps) / (self.total_steps - self.warmup_steps))
        if self.decay == "linear":
            shape = 1.0 - progress
        else:
            shape = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.min_factor + (1.0 - self.min_factor) * shape

    @property
    def is_constant(self) -> bool:
        return self.warmup_steps == 0 and self.decay == "none"


class LrScheduler:
    """Sets ``lr = base * schedule.factor(step)`` in every parameter group of ``optimizer``.

    The base rates are the groups' rates when the scheduler is built (the config's rates).
    """

    def __init__(self, optimizer: Any, schedule: LrSchedule) -> None:
        self.optimizer, self.schedule = optimizer, schedule
        self.base = [float(group["lr"]) for group in optimizer.param_groups]

    def apply(self, step: int) -> float:
        factor = self.schedule.factor(step)
        for group, base in zip(self.optimizer.param_groups, self.base, strict=True):
            group["lr"] = base * factor
        return factor
