"""The cost benchmark's exact activation measure: bytes an encoder's forward saves for backward."""

from __future__ import annotations

import pytest

from benchmarks.cost import _saved_growth
from benchmarks.cost_worker import measure_encoder_activations
from benchmarks.synthetic_inputs import SyntheticSizes, recipe_config
from components.model import LifelongCTRModel


def _saved(model_name: str, length: int) -> float:
    sizes = SyntheticSizes()
    model = LifelongCTRModel(recipe_config(model_name).model, sizes.vocab)
    return measure_encoder_activations(model, 4, length, sizes)["encoder_saved_mib"]


def test_full_attention_saves_activations_linear_in_length() -> None:
    short, long = _saved("DINFull", 500), _saved("DINFull", 2000)
    assert long == pytest.approx(4 * short, rel=0.05)


def test_dmgin_saves_the_same_once_its_groups_are_full() -> None:
    # 500 categories, G groups of at most M behaviors: full long before 5k behaviors per user
    assert _saved("DMGIN", 5000) == pytest.approx(_saved("DMGIN", 20000), rel=1e-3)
    assert _saved("DMGIN", 20) < _saved("DMGIN", 5000)


def test_saved_growth_reads_dmgin_rows() -> None:
    rows = [
        {"model": "DMGIN", "length": 10, "encoder_saved_mib": 2.0},
        {"model": "DMGIN", "length": 100, "encoder_saved_mib": 2.2},
        {"model": "DINFull", "length": 100, "encoder_saved_mib": 9.0},
    ]
    assert _saved_growth(rows, 10) == pytest.approx(1.1)
    assert _saved_growth(rows, 100) is None  # the largest L is the target L itself
    assert _saved_growth(rows[2:], 10) is None
