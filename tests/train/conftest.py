"""A tiny synthetic dataset and config writer shared by the trainer tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipelines.data.synthetic import SyntheticConfig, write_synthetic_dataset
from pipelines.train.config import load_config

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = SyntheticConfig(
        users=60,
        mean_length=120,
        max_length=400,
        items=400,
        groups=16,
        categories=32,
        samples_per_user=24,
        seed=3,
    )
    return write_synthetic_dataset(tmp_path_factory.mktemp("data") / "tiny", config)


def write_config(path: Path, dataset: Path, output: Path, **sections: dict) -> Path:
    config = {
        "data": {"dataset": str(dataset)},
        "model": {"encoder": "DIN", "embedding_dim": 8, "behavior_dim": 4, "over_arch": [16]},
        "loader": {"batch_size": 32, "max_len": 40, "seed": 1},
        "optim": {
            "sparse": "rowwise_adagrad",
            "sparse_lr": 0.05,
            "dense": "adam",
            "dense_lr": 0.003,
        },
        "train": {"epochs": 2, "output_dir": str(output), "log_every": 5, "eval_batch_size": 128},
    }
    for section, values in sections.items():
        config[section].update(values)
    path.write_text(yaml.safe_dump(config))
    return path


def train_process(config: Path, *overrides: str) -> tuple[dict, list[dict]]:
    """``python -m pipelines.train`` in a fresh process (1 rank); returns its ``metrics.json``
    and the records of its ``metrics.jsonl``."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "pipelines.train", "--config", str(config), *overrides]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = Path(load_config(config, list(overrides)).train.output_dir)
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return json.loads((out / "metrics.json").read_text()), lines
