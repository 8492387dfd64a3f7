"""Scaling of numeric event fields before any model reads them.

A raw field (milliseconds played, an amount in cents) can be in the millions; fed as is, it
saturates attention logits and MLP inputs. Every field goes through a signed log and is then
standardised with statistics fit on the training data: ``y = (sign(x) log1p|x| - center) /
scale``. The statistics are buffers, so they travel with every checkpoint and export and are
applied the same in training, evaluation and serving.

Shapes: N behaviors, F numeric fields.

Example:
    >>> x = torch.tensor([[0.0, 1.0], [1e6, 3.0], [2e6, 5.0]])
    >>> center, scale = fit_numeric_scaling(x)
    >>> y = NumericScaler(2, center, scale)(x)
    >>> bool(y.abs().max() < 2.0), tuple(y.shape)
    (True, (3, 2))
"""

from __future__ import annotations

import torch
from torch import nn


def signed_log(x: torch.Tensor) -> torch.Tensor:
    """``sign(x) * log1p(|x|)``: monotone, odd, ~x near 0, ~log|x| for large |x|."""
    return torch.sign(x) * torch.log1p(x.abs())


def fit_numeric_scaling(
    values: torch.Tensor, min_scale: float = 1e-6
) -> tuple[torch.Tensor, torch.Tensor]:
    """``values [n, F]`` -> ``(center [F], scale [F])``: mean and standard deviation of the
    signed log of each field (a constant field gets scale 1, so it maps to 0)."""
    if values.dim() != 2:
        raise ValueError(f"values must be [n, F], got shape {tuple(values.shape)}")
    if not torch.isfinite(values).all():
        raise ValueError("numeric values must be finite to fit their scaling")
    if values.shape[0] == 0:
        f = values.shape[1]
        return torch.zeros(f), torch.ones(f)
    logged = signed_log(values.double())
    center = logged.mean(dim=0)
    scale = logged.std(dim=0, unbiased=False)
    scale = torch.where(scale > min_scale, scale, torch.ones_like(scale))
    return center.float(), scale.float()


class NumericScaler(nn.Module):
    """``x [N, F] -> (signed_log(x) - center) / scale`` with fitted ``center, scale [F]``.

    Without statistics it is the signed log alone (center 0, scale 1); ``enabled=False`` makes
    it the identity (the raw values, for users who scale upstream).
    """

    def __init__(
        self,
        num_fields: int,
        center: torch.Tensor | None = None,
        scale: torch.Tensor | None = None,
        enabled: bool = True,
    ) -> None:
        super().__init__()
        self.enabled = enabled
        self.num_fields = num_fields
        center = torch.zeros(num_fields) if center is None else center.float().reshape(-1)
        scale = torch.ones(num_fields) if scale is None else scale.float().reshape(-1)
        if center.shape != (num_fields,) or scale.shape != (num_fields,):
            raise ValueError(
                f"center/scale must have {num_fields} entries, got {tuple(center.shape)} and "
                f"{tuple(scale.shape)}"
            )
        if not (scale > 0).all():
            raise ValueError("every scale must be > 0")
        self.register_buffer("center", center.clone())
        self.register_buffer("scale", scale.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale_values(x)

    def scale_values(self, x: torch.Tensor) -> torch.Tensor:
        """What ``forward`` computes, as a plain method: callers that may run on another thread
        than an FX trace (TorchRec's data-loading thread runs the lookup plan while the main
        thread traces the model, and FX patches ``nn.Module.__call__`` process-wide) call this
        instead of the module."""
        if not self.enabled or self.num_fields == 0:  # static: FX traces no branch on x
            return x
        return (signed_log(x) - self.center.to(x.dtype)) / self.scale.to(x.dtype)
