"""The MLP is Linear + activation (+ dropout) per hidden layer, no activation after the last one
unless asked; DIN's activation unit is a PReLU MLP ending in one weight per behavior."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from components.layers.din_activation import DINActivationUnit
from components.layers.mlp import MLP


def _kinds(mlp: MLP) -> list[str]:
    return [type(layer).__name__ for layer in mlp.layers]


def test_defaults_put_no_activation_or_dropout_after_the_last_layer() -> None:
    mlp = MLP(4, [8, 3])
    assert _kinds(mlp) == ["Linear", "ReLU", "Linear"]
    assert mlp.output_dim == 3
    assert mlp(torch.randn(5, 4)).shape == (5, 3)


def test_output_activation_and_dropout_follow_every_layer_asked() -> None:
    mlp = MLP(4, [8, 3], activation="silu", dropout=0.25, output_activation=True)
    assert _kinds(mlp) == ["Linear", "SiLU", "Dropout", "Linear", "SiLU", "Dropout"]
    assert all(m.p == 0.25 for m in mlp.layers if isinstance(m, nn.Dropout))
    assert bool((MLP(4, [3], output_activation=True)(torch.randn(50, 4)) >= 0).all())  # ReLU


def test_one_layer_mlp_is_one_linear_map() -> None:
    mlp = MLP(4, [6])
    assert _kinds(mlp) == ["Linear"] and mlp.output_dim == 6
    x = torch.randn(3, 4)
    linear = mlp.layers[0]
    assert torch.allclose(mlp(x), x @ linear.weight.T + linear.bias)


def test_bad_sizes_and_activations_are_named() -> None:
    with pytest.raises(ValueError, match=r"^MLP needs at least one layer size$"):
        MLP(4, [])
    with pytest.raises(ValueError, match=r"unknown activation 'tanh'; choose from \['gelu', "):
        MLP(4, [2], activation="tanh")


def test_din_unit_scores_each_behavior_with_a_prelu_mlp() -> None:
    unit = DINActivationUnit(6, hidden=(5,))
    assert unit.output_dim == 6
    assert _kinds(unit.mlp) == ["Linear", "PReLU", "Linear"]
    assert unit.mlp.output_dim == 1
