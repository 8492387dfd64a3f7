"""Which evaluation is the best so far, and when to stop: model selection on the valid split.

``train.select_metric`` (``auc``, ``gauc`` or ``logloss``) is compared at every valid
evaluation; the best one's model state is kept (``checkpoints/best``) and the test split is
scored with it (``train.test_state=best``). ``train.patience`` evaluations in a row without an
improvement stop training early (0: never).

Example:
    >>> t = Selection("logloss", patience=2)
    >>> [t.update(v, step=s, epoch=0) for s, v in enumerate([0.6, 0.5, 0.55, 0.51])]
    [True, True, False, False]
    >>> t.best_step, t.should_stop
    (1, True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: direction of each selectable metric
HIGHER_IS_BETTER = {"auc": True, "gauc": True, "logloss": False}


@dataclass
class Selection:
    """Best valid value so far (NaN values never count as an improvement)."""

    metric: str = "auc"
    patience: int = 0
    best_value: float = float("nan")
    best_step: int = -1
    best_epoch: int = -1
    evals_since_best: int = 0

    def __post_init__(self) -> None:
        if self.metric not in HIGHER_IS_BETTER:
            raise ValueError(
                f"metric must be one of {sorted(HIGHER_IS_BETTER)}, got {self.metric!r}"
            )

    def improves(self, value: float) -> bool:
        if value is None or math.isnan(value):
            return False
        if math.isnan(self.best_value):
            return True
        return value > self.best_value if HIGHER_IS_BETTER[self.metric] else value < self.best_value

    def update(self, value: float, step: int, epoch: int) -> bool:
        """Record one evaluation; returns whether it is the new best."""
        if self.improves(value):
            self.best_value, self.best_step, self.best_epoch = float(value), step, epoch
            self.evals_since_best = 0
            return True
        self.evals_since_best += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.patience > 0 and self.evals_since_best >= self.patience
