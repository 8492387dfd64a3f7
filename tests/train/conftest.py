"""A tiny synthetic dataset and config writer shared by the trainer tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipelines.data.synthetic import SyntheticConfig, write_synthetic_dataset


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
