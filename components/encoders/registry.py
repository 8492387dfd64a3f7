"""Encoders by name, so configs can say ``encoder: DMGIN``, or ``encoder: mypkg.mod:MyEncoder``.

Built-in entries are ``name -> (module, class name, config class name)``; imports are lazy so a
model that uses one encoder does not import the others. Any other name of the form
``"package.module:ClassName"`` names your own encoder: a :class:`SequenceEncoder` subclass whose
constructor is ``(spec: EncoderSpec, config: ConfigDataclass | None)`` and whose class attribute
``config_class`` is that config dataclass. Nothing needs registering; the module must be
importable in every process that builds the model (trainer ranks, export, benchmarks).
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

from components.encoders.base import EncoderSpec, SequenceEncoder

ENCODERS: dict[str, tuple[str, str, str]] = {
    "DIN": ("components.encoders.din", "DIN", "DINConfig"),
    "DINFull": ("components.encoders.din", "DINFull", "DINFullConfig"),
    "SIMHard": ("components.encoders.sim", "SIMHard", "SIMConfig"),
    "SIMSoft": ("components.encoders.sim", "SIMSoft", "SIMConfig"),
    "ETA": ("components.encoders.eta", "ETA", "ETAConfig"),
    "DMGIN": ("components.encoders.dmgin", "DMGIN", "DMGINConfig"),
    "CiUBM": ("components.encoders.ciubm", "CiUBM", "CiUBMConfig"),
    "TWIN": ("components.encoders.twin", "TWIN", "TWINConfig"),
    "SDIM": ("components.encoders.sdim", "SDIM", "SDIMConfig"),
    "TWINV2": ("components.encoders.twin_v2", "TWINV2", "TWINV2Config"),
}


def resolve_encoder(name: str) -> tuple[type[SequenceEncoder], type]:
    """``(encoder class, config dataclass)`` of a built-in name or a ``"module:Class"`` path.

    Raises:
        ValueError: unknown name, unimportable module, missing class, a class that is not a
            SequenceEncoder, or one without a dataclass ``config_class``; the message says which.
    """
    if name in ENCODERS:
        module_name, class_name, config_name = ENCODERS[name]
        module = importlib.import_module(module_name)
        return getattr(module, class_name), getattr(module, config_name)
    module_name, colon, class_name = name.partition(":")
    if not colon or not module_name or not class_name:
        raise ValueError(
            f"unknown encoder {name!r}; choose from {sorted(ENCODERS)} or give your own as "
            "'package.module:ClassName'"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"encoder {name!r}: cannot import module {module_name!r}: {err}") from err
    encoder_class = getattr(module, class_name, None)
    if encoder_class is None:
        raise ValueError(f"encoder {name!r}: module {module_name!r} has no {class_name!r}")
    if not (isinstance(encoder_class, type) and issubclass(encoder_class, SequenceEncoder)):
        raise ValueError(f"encoder {name!r}: {class_name} is not a SequenceEncoder subclass")
    config_class = getattr(encoder_class, "config_class", None)
    if not (isinstance(config_class, type) and dataclasses.is_dataclass(config_class)):
        raise ValueError(
            f"encoder {name!r}: {class_name}.config_class must be its config dataclass"
        )
    return encoder_class, config_class


def encoder_config_class(name: str) -> type:
    """The config dataclass of encoder ``name`` (built-in or ``"module:Class"``)."""
    return resolve_encoder(name)[1]


def build_encoder(name: str, spec: EncoderSpec, config: Any | None = None) -> SequenceEncoder:
    """Instantiate encoder ``name``; ``config`` is its config dataclass or a dict of fields."""
    encoder_class, config_class = resolve_encoder(name)
    if isinstance(config, dict):
        config = config_class(**config)
    return encoder_class(spec, config)
