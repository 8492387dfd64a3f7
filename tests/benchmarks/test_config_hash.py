"""The quality benchmark's run hash: what is trained changes it, how rows are looked up not."""

from __future__ import annotations

from pathlib import Path

from benchmarks.quality.variants import config_hash
from pipelines.train.config import load_config

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "configs" / "ml1m_dmgin.yaml"


def _hash(*overrides: str) -> str:
    return config_hash(load_config(RECIPE, list(overrides)), {})


def test_lookup_plan_and_output_dir_do_not_change_the_hash() -> None:
    base = _hash()
    assert _hash("train.lookup_plan=false") == base
    assert _hash("train.output_dir=/somewhere/else") == base


def test_training_settings_change_the_hash() -> None:
    base = _hash()
    assert _hash("optim.dense_lr=0.004") != base
    assert _hash("train.seed=1") != base
    assert _hash("model.encoder_config.max_groups=16") != base
