"""``scripts/gpu_check.sh`` in its CPU mode (``GPU_CHECK_DEVICE=cpu``: toy sizes, a temporary
results file): every stage runs and exits 0, and what it writes reaches ``$OUT``. The CUDA run
itself needs a GPU session (docs/gpu.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_check_script_cpu_mode(tmp_path: Path) -> None:
    env = dict(os.environ, GPU_CHECK_DEVICE="cpu", PYTHON=sys.executable, OUT=str(tmp_path))
    env["OMP_NUM_THREADS"] = "1"
    result = subprocess.run(
        ["bash", "scripts/gpu_check.sh"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    stages = (tmp_path / "stages.txt").read_text().split("\n")
    assert [line.split()[:2] for line in stages if line] == [
        [name, "0"] for name in ("info", "tests", "parity_errors", "benchmark", "targets")
    ]
    results = json.loads((tmp_path / "encoders_device.json").read_text())
    assert results["device"]["device"] == "cpu" and len(results["results"]) == 12
    assert json.loads((tmp_path / "parity_errors.json").read_text())
    assert "GPU targets at L=10,000" in (tmp_path / "targets.log").read_text()
