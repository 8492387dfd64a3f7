"""Experiment configuration: dataclasses, loaded strictly from YAML plus ``key=value`` overrides.

A YAML file is only a thin loader for :class:`ExperimentConfig`. Every problem (unknown key, wrong
type, bad value) raises :class:`ConfigError` naming the file and the dotted key before any work
starts.

Example YAML::

    data: {dataset: data/ml1m}
    model: {encoder: DMGIN, embedding_dim: 16, encoder_config: {max_groups: 32}}
    loader: {batch_size: 512, max_len: 512}
    optim: {sparse: rowwise_adagrad, sparse_lr: 0.05, dense: adam, dense_lr: 0.001}
    train: {epochs: 2, output_dir: runs/ml1m_dmgin}
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import yaml

from components.encoders.registry import encoder_config_class
from components.model import ModelConfig
from pipelines.data.loader import LoaderConfig
from pipelines.train.schedule import DECAYS
from pipelines.train.selection import HIGHER_IS_BETTER

SPARSE_OPTIMIZERS_CPU = ("rowwise_adagrad", "adagrad", "sgd")
SPARSE_OPTIMIZERS = (*SPARSE_OPTIMIZERS_CPU, "adam")
DENSE_OPTIMIZERS = ("adam", "adamw", "sgd", "adagrad")


class ConfigError(ValueError):
    """A configuration problem, naming the source file and the dotted key."""


@dataclass
class DataConfig:
    """Attributes:
    dataset: prepared dataset directory (``python -m pipelines.prepare``).
    groups: optional ``item -> group`` parquet (``pipelines.content.cluster``), needed when
        ``model.group_key`` is ``cluster``.
    content: optional ``[items, d]`` .npy of frozen content embeddings
        (``pipelines.content.embed`` / ``csft``), needed by CiUBM.
    """

    dataset: str = ""
    groups: str | None = None
    content: str | None = None


@dataclass
class OptimConfig:
    """Attributes:
    sparse: fused in-backward optimizer of the embedding tables (CPU: rowwise_adagrad,
        adagrad or sgd; CUDA also adam).
    sparse_lr: its learning rate.
    dense: optimizer of every other parameter (and of data-parallel tables).
    dense_lr: its learning rate.
    weight_decay: dense weight decay (L2 for adam/sgd/adagrad, decoupled for adamw).
    sparse_weight_decay: L2 weight decay of the embedding rows, inside the fused optimizer
        (applied to the rows a step touches).
    warmup_steps: linear learning-rate warmup over this many steps, sparse and dense (0 = none).
    lr_decay: ``none``, ``linear`` or ``cosine`` decay to ``min_lr_factor`` x the rate at the
        last step (``pipelines.train.schedule``).
    min_lr_factor: the decay's final fraction of the rate, in [0, 1].
    """

    sparse: str = "rowwise_adagrad"
    sparse_lr: float = 0.05
    dense: str = "adam"
    dense_lr: float = 1e-3
    weight_decay: float = 0.0
    sparse_weight_decay: float = 0.0
    warmup_steps: int = 0
    lr_decay: str = "none"
    min_lr_factor: float = 0.0


@dataclass
class TrainConfig:
    """Attributes:
    epochs: passes over the train split.
    max_steps: stop after this many steps in total (0 = no limit).
    eval_batch_size: batch size of valid/test passes.
    checkpoint_every: save a checkpoint every N steps (0 = only at epoch end).
    keep_checkpoints: how many checkpoints to keep.
    seed: seeds model init, loader order and dropout.
    output_dir: metrics.jsonl, metrics.json, TensorBoard logs, checkpoints.
    log_every: steps between progress-bar/metric log updates.
    device: auto (cuda when available), cpu or cuda.
    aux_loss_weight: weight of auxiliary losses (SIMSoft's GSU task).
    save_predictions: write predictions_{split}.parquet at every evaluation.
    eval_test: also evaluate the test split at the end.
    lookup_plan: look up only the history rows the encoder reads (``pipelines.train.lookup_plan``);
        same outputs and gradients as looking up all of them, O(R) rows instead of O(N).
    eval_every: also score the valid split every N steps (0 = only at the end of each epoch).
    select_metric: the valid metric that picks the best state: ``auc``, ``gauc`` or ``logloss``.
    patience: stop after this many valid evaluations in a row without a better
        ``select_metric`` (0 = never stop early).
    test_state: score the test split with the ``best`` state (kept in ``checkpoints/best``) or
        the ``last`` one.
    """

    epochs: int = 1
    max_steps: int = 0
    eval_batch_size: int = 2048
    checkpoint_every: int = 0
    keep_checkpoints: int = 2
    seed: int = 0
    output_dir: str = "runs/experiment"
    log_every: int = 20
    device: str = "auto"
    aux_loss_weight: float = 1.0
    save_predictions: bool = False
    eval_test: bool = True
    lookup_plan: bool = True
    eval_every: int = 0
    select_metric: str = "auc"
    patience: int = 2
    test_state: str = "best"


@dataclass
class ExperimentConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loader: LoaderConfig = field(default_factory=LoaderConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read ``path`` (YAML) and apply ``key.sub=value`` overrides (values parsed as YAML)."""
    source = str(path) if path is not None else "<defaults>"
    raw: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"{source}: file not found")
        try:
            raw = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{source}: not valid YAML: {err}") from err
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: top level must be a mapping")
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value")
        key, value = item.split("=", 1)
        node = raw
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part} is not a section")
        node[parts[-1]] = yaml.safe_load(value)
    config = _build(ExperimentConfig, raw, source, "")
    validate(config, source)
    return config


def _build(cls: type, raw: Any, source: str, prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{source}: {prefix.rstrip('.') or 'config'} must be a mapping, got {raw!r}"
        )
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(
            f"{source}: unknown key '{prefix}{unknown[0]}'; known keys: {sorted(names)}"
        )
    kwargs = {}
    for name, value in raw.items():
        key = f"{prefix}{name}"
        kwargs[name] = _coerce(hints[name], value, source, key)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{source}: {prefix.rstrip('.') or 'config'}: {err}") from err


def _coerce(tp: Any, value: Any, source: str, key: str) -> Any:
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, source, key + ".")
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, source, key)
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{source}: {key} must be a list, got {value!r}")
        return list(value) if origin is list else tuple(value)
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {key} must be a mapping, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: {key} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: {key} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{source}: {key} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{source}: {key} must be a string, got {value!r}")
        return value
    return value


def validate(config: ExperimentConfig, source: str = "<config>") -> None:
    """Value checks that types cannot express (raised before any work starts)."""

    def fail(key: str, message: str) -> NoReturn:
        raise ConfigError(f"{source}: {key}: {message}")

    if not config.data.dataset:
        fail("data.dataset", "required (a prepared dataset directory)")
    try:
        config_class = encoder_config_class(config.model.encoder)
    except ValueError as err:
        fail("model.encoder", str(err))
    try:
        config_class(**config.model.encoder_config)
    except (TypeError, ValueError) as err:
        fail("model.encoder_config", str(err))
    if config.model.encoder == "CiUBM" and not config.data.content:
        fail("data.content", "required by CiUBM (an [items, d] .npy from pipelines.content)")
    if config.model.group_key == "cluster" and not config.data.groups:
        fail("data.groups", "required when model.group_key is 'cluster'")
    o = config.optim
    if o.sparse not in SPARSE_OPTIMIZERS:
        fail("optim.sparse", f"unknown {o.sparse!r}; choose from {SPARSE_OPTIMIZERS}")
    if o.dense not in DENSE_OPTIMIZERS:
        fail("optim.dense", f"unknown {o.dense!r}; choose from {DENSE_OPTIMIZERS}")
    for key, value in (("optim.sparse_lr", o.sparse_lr), ("optim.dense_lr", o.dense_lr)):
        if not value > 0:
            fail(key, f"must be > 0, got {value}")
    for key in ("weight_decay", "sparse_weight_decay", "warmup_steps"):
        if getattr(o, key) < 0:
            fail(f"optim.{key}", f"must be >= 0, got {getattr(o, key)}")
    if o.lr_decay not in DECAYS:
        fail("optim.lr_decay", f"unknown {o.lr_decay!r}; choose from {DECAYS}")
    if not 0.0 <= o.min_lr_factor <= 1.0:
        fail("optim.min_lr_factor", f"must be in [0, 1], got {o.min_lr_factor}")
    t = config.train
    if t.device not in ("auto", "cpu", "cuda"):
        fail("train.device", f"must be auto, cpu or cuda, got {t.device!r}")
    for key in ("epochs", "eval_batch_size", "keep_checkpoints", "log_every"):
        if getattr(t, key) < 1:
            fail(f"train.{key}", f"must be >= 1, got {getattr(t, key)}")
    for key in ("max_steps", "checkpoint_every", "eval_every", "patience"):
        if getattr(t, key) < 0:
            fail(f"train.{key}", f"must be >= 0, got {getattr(t, key)}")
    if t.select_metric not in HIGHER_IS_BETTER:
        fail(
            "train.select_metric",
            f"choose from {sorted(HIGHER_IS_BETTER)}, got {t.select_metric!r}",
        )
    if t.test_state not in ("best", "last"):
        fail("train.test_state", f"must be best or last, got {t.test_state!r}")


def to_dict(config: ExperimentConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)


def config_from_dict(raw: dict[str, Any], source: str = "<dict>") -> ExperimentConfig:
    """Rebuild a config from :func:`to_dict` output (e.g. a checkpoint's ``config.json``).

    Same strict checks as :func:`load_config`; problems raise :class:`ConfigError` naming
    ``source``.
    """
    config = _build(ExperimentConfig, raw, source, "")
    validate(config, source)
    return config
