"""Config loading: strict keys, types and values, errors before any work starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.train.config import ConfigError, load_config
from pipelines.train.trainer import main


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_valid_config_and_overrides(tmp_path: Path) -> None:
    path = _write(
        tmp_path, "data: {dataset: d}\nmodel: {encoder: DIN, encoder_config: {max_len: 20}}\n"
    )
    config = load_config(path, ["train.epochs=3", "optim.dense_lr=0.01", "model.over_arch=[8, 4]"])
    assert config.train.epochs == 3
    assert config.optim.dense_lr == 0.01
    assert config.model.over_arch == [8, 4]
    assert config.model.encoder_config == {"max_len": 20}


@pytest.mark.parametrize(
    ("text", "overrides", "message"),
    [
        ("data: {dataset: d}\ntrain: {epocs: 2}\n", [], "unknown key 'train.epocs'"),
        ("data: {dataset: d}\nbogus: {}\n", [], "unknown key 'bogus'"),
        ("data: {dataset: d}\ntrain: {epochs: two}\n", [], "train.epochs must be an integer"),
        (
            "data: {dataset: d}\nmodel: {encoder: DIN}\noptim: {dense_lr: -1}\n",
            [],
            "optim.dense_lr: must be > 0",
        ),
        ("data: {dataset: d}\nmodel: {encoder: Nope}\n", [], "unknown encoder 'Nope'"),
        (
            "data: {dataset: d}\nmodel: {encoder: DIN}\noptim: {sparse: lamb}\n",
            [],
            "optim.sparse: unknown 'lamb'",
        ),
        ("data: {dataset: d}\nmodel: {group_key: shop}\n", [], "group_key must be one of"),
        (
            "data: {dataset: d}\nmodel: {encoder: DIN, group_key: cluster}\n",
            [],
            "data.groups: required",
        ),
        ("model: {encoder: DIN}\n", [], "data.dataset: required"),
        (
            "data: {dataset: d}\nmodel: {encoder: DIN, encoder_config: {max_len: 0}}\n",
            [],
            "max_len must be >= 1",
        ),
        ("data: {dataset: d}\n", ["train.epochs"], "expected key=value"),
        ("data: [1, 2]\n", [], "data must be a mapping"),
    ],
)
def test_config_errors_name_file_and_key(
    tmp_path: Path, text: str, overrides: list, message: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path, overrides)
    assert message in str(err.value)
    if "expected key=value" not in message:
        assert str(path) in str(err.value)


def test_main_exits_nonzero_before_work(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = _write(
        tmp_path,
        f"data: {{dataset: d}}\nmodel: {{encoder: DIN}}\ntrain: {{output_dir: {tmp_path / 'out'}, epochs: 0}}\n",
    )
    assert main(["--config", str(path)]) == 2
    assert "train.epochs: must be >= 1" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "absent.yaml")


@pytest.mark.parametrize(
    "path", sorted((Path(__file__).parents[2] / "recipes" / "configs").glob("*.yaml"))
)
def test_shipped_recipe_configs_are_valid(path: Path) -> None:
    config = load_config(path)
    assert config.data.dataset.startswith("data/")
    assert config.train.output_dir.startswith("runs/")
