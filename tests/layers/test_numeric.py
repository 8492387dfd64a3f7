"""Numeric scaling: the statistics are the per-field mean and population standard deviation of
the signed log (a field no wider than ``min_scale`` gets scale 1), fitting refuses bad input by
name, and the scaler keeps the input's dtype and refuses statistics of the wrong size."""

from __future__ import annotations

import pytest
import torch

from components.layers.numeric import NumericScaler, fit_numeric_scaling, signed_log


def test_statistics_are_per_field_mean_and_population_std_of_the_signed_log() -> None:
    values = torch.tensor([[0.0, 1e6, 7.0], [3.0, 2e6, 7.0], [-1.0, 5e6, 7.0], [0.5, 0.0, 7.0]])
    center, scale = fit_numeric_scaling(values)
    logged = signed_log(values.double())
    for f in range(2):
        column = logged[:, f].tolist()
        mean = sum(column) / len(column)
        std = (sum((v - mean) ** 2 for v in column) / len(column)) ** 0.5
        assert center[f].item() == pytest.approx(mean, rel=1e-6)
        assert scale[f].item() == pytest.approx(std, rel=1e-6)
    assert center[2].item() == pytest.approx(float(torch.log1p(torch.tensor(7.0))))
    assert scale[2].item() == 1.0  # a constant field maps to 0
    assert center.dtype == scale.dtype == torch.float32


def test_only_spreads_up_to_min_scale_become_one() -> None:
    values = torch.tensor([[0.0], [0.2]])  # signed-log spread ~0.09: kept by the default
    spread = float(signed_log(values.double()).std(dim=0, unbiased=False)[0])
    assert fit_numeric_scaling(values)[1][0].item() == pytest.approx(spread, rel=1e-6)
    assert fit_numeric_scaling(values, min_scale=spread)[1][0].item() == 1.0  # not above it
    assert fit_numeric_scaling(values, min_scale=spread * 0.99)[1][0].item() < 1.0


@pytest.mark.parametrize("n", [0, 1])
def test_no_rows_and_one_row(n: int) -> None:
    values = torch.full((n, 3), 4.0)
    center, scale = fit_numeric_scaling(values)
    expected = float(torch.log1p(torch.tensor(4.0))) if n else 0.0
    assert center.tolist() == pytest.approx([expected] * 3)
    assert scale.tolist() == [1.0, 1.0, 1.0]


def test_fitting_names_bad_input() -> None:
    with pytest.raises(ValueError, match=r"^values must be \[n, F\], got shape \(3,\)$"):
        fit_numeric_scaling(torch.zeros(3))
    with pytest.raises(ValueError, match=r"^numeric values must be finite to fit their scaling$"):
        fit_numeric_scaling(torch.tensor([[1.0], [float("inf")]]))


def test_scaler_applies_the_statistics_in_the_inputs_dtype() -> None:
    scaler = NumericScaler(2, torch.tensor([[1.0, 2.0]]), torch.tensor([[2.0, 4.0]]))
    assert scaler.num_fields == 2
    x = torch.tensor([[0.0, 100.0], [5.0, -3.0]])
    expected = (signed_log(x) - torch.tensor([1.0, 2.0])) / torch.tensor([2.0, 4.0])
    assert torch.allclose(scaler(x), expected)
    assert scaler(x.to(torch.bfloat16)).dtype == torch.bfloat16
    assert torch.equal(NumericScaler(2, enabled=False)(x), x)


@pytest.mark.parametrize(
    ("center", "scale"),
    [(torch.zeros(3), torch.ones(2)), (torch.zeros(2), torch.ones(3))],
    ids=["center", "scale"],
)
def test_scaler_refuses_statistics_of_another_width(center, scale) -> None:
    with pytest.raises(ValueError, match=r"^center/scale must have 2 entries"):
        NumericScaler(2, center, scale)


def test_scaler_refuses_a_scale_that_is_not_positive() -> None:
    with pytest.raises(ValueError, match=r"^every scale must be > 0$"):
        NumericScaler(2, torch.zeros(2), torch.tensor([1.0, 0.0]))
