"""``AttentionDropout`` is the identity until a model sets it; ``set_attention_dropout`` sets
every one under a module and refuses a rate outside [0, 1) by name."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from components.layers.attention_dropout import AttentionDropout, set_attention_dropout


def test_a_new_layer_is_the_identity_even_in_training() -> None:
    layer = AttentionDropout().train()
    weights = torch.rand(3, 5)
    assert layer.p == 0.0
    assert torch.equal(layer(weights), weights)


def test_set_reaches_every_layer_and_counts_them() -> None:
    model = nn.Sequential(AttentionDropout(), nn.Linear(2, 2), nn.Sequential(AttentionDropout()))
    assert set_attention_dropout(model, 0.3) == 2
    assert [m.p for m in model.modules() if isinstance(m, AttentionDropout)] == [0.3, 0.3]


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_rates_outside_zero_one_are_refused_by_name(p: float) -> None:
    with pytest.raises(ValueError, match=rf"attention dropout must be in \[0, 1\), got {p}"):
        set_attention_dropout(nn.Sequential(AttentionDropout()), p)
