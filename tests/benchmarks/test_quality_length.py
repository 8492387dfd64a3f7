"""Quality versus history length: ``--max-len`` results files grouped into sweeps, one column per
length, and the rise of DMGIN's test AUC from 200 to 10,000 (from results dicts, no training)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from benchmarks.common import write_json_atomic
from benchmarks.quality.length import (
    length_sweeps,
    render_length_table,
    rises_with_length,
    sweep_key,
)
from benchmarks.summary import quality_summary


def _results(name: str, aucs: dict[str, list[float]], floor: float = 0.7) -> dict[str, Any]:
    runs = {
        model: {
            f"lr0.002_s{seed}": {
                "variant": model,
                "lr": 0.002,
                "seed": seed,
                "status": "ok",
                "valid": {"auc": 0.8},
                "test": {"auc": auc, "gauc": auc - 0.1, "logloss": 0.5},
                "train_seconds": 1.0,
                "peak_rss_mib": 1.0,
            }  # fmt: skip
            for seed, auc in enumerate(values)
        }
        for model, values in aucs.items()
    }
    return {"dataset": name, "floor": {"test": {"auc": floor, "gauc": 0.6}}, "runs": runs}


def test_sweep_names() -> None:
    assert sweep_key("spotify-streaming-u13-L10000-n40000") == (
        "spotify-streaming-u13-n40000",
        10_000,
    )
    assert sweep_key("spotify-streaming-u13-L200") == ("spotify-streaming-u13", 200)
    assert sweep_key("my-L2-data-L50-n7-s3") == ("my-L2-data-n7-s3", 50)
    assert sweep_key("ml-1m-u2999") is None
    assert sweep_key("ml-1m-u2999-n40000") is None


def test_sweeps_group_by_everything_but_the_length() -> None:
    data = [
        _results("d-L10000-n5", {"DMGIN": [0.75]}),
        _results("d-L200-n5", {"DMGIN": [0.72]}),
        _results("d-L200-n9", {"DMGIN": [0.70]}),  # another subsample: another sweep
        _results("d", {"DMGIN": [0.71]}),  # no length: no sweep
    ]
    sweeps = length_sweeps(data)
    assert list(sweeps) == ["d-n5", "d-n9"]
    assert list(sweeps["d-n5"]) == [200, 10_000]  # sorted by length


def test_table_and_rise() -> None:
    points = {
        200: _results("d-L200", {"DMGIN": [0.72, 0.74], "DIN": [0.71]}),
        10_000: _results("d-L10000", {"DMGIN": [0.76, 0.76]}),
    }
    rise = rises_with_length(points, "DMGIN", 200, 10_000)
    assert rise["seeds"] == [0, 1] and rise["gain"] == pytest.approx(0.03)
    assert rise["std"] == pytest.approx(0.0141421, abs=1e-6) and rise["rises"] is True
    assert rises_with_length(points, "DIN", 200, 10_000) is None  # DIN lacks L=10,000
    assert rises_with_length(points, "DMGIN", 50, 10_000) is None
    text = render_length_table("d", points)
    assert "| model | L=200 | L=10,000 |" in text
    assert "| DMGIN | 0.7300 ± 0.0141 / 0.6300 | 0.7600 ± 0.0000 / 0.6600 |" in text
    assert "| DIN | 0.7100 / 0.6100 | - |" in text
    assert "| DIN |" not in render_length_table("d", points, swept_only=True)  # one length only
    assert "| DMGIN |" in render_length_table("d", points, swept_only=True)
    assert "| floor (no model) | 0.7000 / 0.6000 | 0.7000 / 0.6000 |" in text
    assert (
        "paired by seed over seeds [0, 1]: 0.7300 -> 0.7600 (+0.0300 ± 0.0141; "
        "target: rises by more than its std: met)" in text
    )
    # a positive mean gain within its std is not a rise
    points[10_000] = _results("d-L10000", {"DMGIN": [0.75, 0.74]})
    rise = rises_with_length(points, "DMGIN", 200, 10_000)
    assert rise["gain"] == pytest.approx(0.015) and rise["rises"] is False
    # only the seeds both lengths ran are compared: seed 1 of L=200 has no partner
    points[10_000] = _results("d-L10000", {"DMGIN": [0.70]})
    rise = rises_with_length(points, "DMGIN", 200, 10_000)
    assert rise["seeds"] == [0] and rise["gain"] == pytest.approx(-0.02) and rise["std"] is None
    assert "0.7200 -> 0.7000 (-0.0200, one seed; target: rises by more than its std: missed)" in (
        render_length_table("d", points)
    )
    assert "DMGIN+item test AUC" not in render_length_table("d", points)
    # DMGIN with the candidate item's statistics gets its own verdict where it ran both lengths
    points[200]["runs"]["DMGIN+item"] = _results("x", {"DMGIN+item": [0.80]})["runs"]["DMGIN+item"]
    points[10_000]["runs"]["DMGIN+item"] = _results("x", {"DMGIN+item": [0.83]})["runs"][
        "DMGIN+item"
    ]
    verdict = (
        "DMGIN+item test AUC from L=200 to L=10,000, paired by seed over seeds [0]: 0.8000 "
        "-> 0.8300 (+0.0300, one seed; target: rises by more than its std: met)"
    )
    assert verdict in render_length_table("d", points)


def test_readme_summary_shows_the_sweep_once(tmp_path: Path) -> None:
    for name, auc in (("d-L200-n5", 0.72), ("d-L1000-n5", 0.73), ("d-L10000-n5", 0.75)):
        write_json_atomic(tmp_path / f"quality_{name}.json", _results(name, {"DMGIN": [auc]}))
    text = quality_summary(tmp_path)
    assert "d-L1000-n5 AUC" in text  # the recipes' length is the per-dataset column
    assert "d-L200-n5 AUC" not in text and "d-L10000-n5 AUC" not in text
    assert "Quality versus history length on d-n5" in text
    assert "| DMGIN | 0.7200 / 0.6200 | 0.7300 / 0.6300 | 0.7500 / 0.6500 |" in text
