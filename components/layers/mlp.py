"""A plain multi-layer perceptron."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

_ACTIVATIONS = {"relu": nn.ReLU, "silu": nn.SiLU, "gelu": nn.GELU, "prelu": nn.PReLU}


class MLP(nn.Module):
    """``[..., in_dim] -> [..., hidden[-1]]``.

    Linear + activation (+ dropout) per hidden layer; the last layer has no activation unless
    ``output_activation`` is set.

    Example:
        >>> mlp = MLP(16, [32, 1])
        >>> mlp(torch.randn(4, 16)).shape
        torch.Size([4, 1])
    """

    def __init__(
        self,
        in_dim: int,
        hidden: Sequence[int],
        activation: str = "relu",
        dropout: float = 0.0,
        output_activation: bool = False,
    ) -> None:
        super().__init__()
        if not hidden:
            raise ValueError("MLP needs at least one layer size")
        if activation not in _ACTIVATIONS:
            raise ValueError(
                f"unknown activation {activation!r}; choose from {sorted(_ACTIVATIONS)}"
            )
        layers: list[nn.Module] = []
        dims = [in_dim, *hidden]
        for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
            layers.append(nn.Linear(d_in, d_out))
            last = i == len(hidden) - 1
            if not last or output_activation:
                layers.append(_ACTIVATIONS[activation]())
                if dropout > 0:
                    layers.append(nn.Dropout(dropout))
        self.layers = nn.Sequential(*layers)
        self.output_dim = dims[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
