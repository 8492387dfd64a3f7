"""Adapts a CTR model to TorchRec's train pipeline, which expects ``model(batch) -> (loss, out)``."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class CTRLoss(nn.Module):
    """Weight-averaged BCE of the logits plus ``aux_weight`` x the same loss of each aux logit.

    A module of its own so TorchRec's pipeline tracer treats it as one leaf call (the dict of
    auxiliary logits cannot be iterated during symbolic tracing).
    """

    def __init__(self, aux_weight: float = 1.0) -> None:
        super().__init__()
        self.aux_weight = aux_weight

    def forward(self, output: Any, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        denominator = weights.sum().clamp_min(1.0)
        loss = (
            F.binary_cross_entropy_with_logits(output.logits, labels, reduction="none") * weights
        ).sum() / denominator
        for aux in output.aux_logits.values():
            aux_loss = F.binary_cross_entropy_with_logits(aux, labels, reduction="none")
            loss = loss + self.aux_weight * (aux_loss * weights).sum() / denominator
        return loss


class TrainWrapper(nn.Module):
    """``forward(batch) -> (loss, (loss, logits, labels, weights, user_ids))``.

    Weight-0 rows (eval padding) contribute nothing to the loss.
    """

    def __init__(self, model: nn.Module, aux_loss_weight: float = 1.0) -> None:
        super().__init__()
        self.model = model
        self.loss = CTRLoss(aux_loss_weight)

    def forward(self, batch: Any) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        output = self.model(batch)
        loss = self.loss(output, batch.labels, batch.weights)
        return loss, (
            loss.detach(),
            output.logits.detach(),
            batch.labels,
            batch.weights,
            batch.user_ids,
        )
