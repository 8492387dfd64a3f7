"""Fixtures for the torchx recipes: the components module and a tiny synthetic dataset."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from pipelines.data.synthetic import SyntheticConfig, write_synthetic_dataset

REPO = Path(__file__).resolve().parents[2]
COMPONENTS_FILE = REPO / "recipes" / "components.py"


def load_components_module() -> ModuleType:
    """recipes/components.py as a module (not importable by name: recipes is no package)."""
    spec = importlib.util.spec_from_file_location("lifelongrec_recipes", COMPONENTS_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def components_module() -> ModuleType:
    return load_components_module()


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = SyntheticConfig(
        users=48,
        mean_length=100,
        max_length=300,
        items=300,
        groups=12,
        categories=24,
        samples_per_user=20,
        seed=11,
    )
    return write_synthetic_dataset(tmp_path_factory.mktemp("recipes") / "small", config)


@pytest.fixture()
def dataset_copy(small_dataset: Path, tmp_path: Path) -> Path:
    """A private copy, for steps that write into the dataset directory."""
    return Path(shutil.copytree(small_dataset, tmp_path / "dataset"))


def write_train_config(path: Path, dataset: Path, output: Path) -> Path:
    """A DIN experiment small enough to train in about a second."""
    config = {
        "data": {"dataset": str(dataset)},
        "model": {"encoder": "DIN", "embedding_dim": 8, "behavior_dim": 4, "over_arch": [16]},
        "loader": {"batch_size": 32, "max_len": 32, "seed": 2},
        "optim": {
            "sparse": "rowwise_adagrad",
            "sparse_lr": 0.05,
            "dense": "adam",
            "dense_lr": 0.003,
        },
        "train": {"epochs": 2, "output_dir": str(output), "log_every": 5, "eval_batch_size": 128},
    }
    path.write_text(yaml.safe_dump(config))
    return path
