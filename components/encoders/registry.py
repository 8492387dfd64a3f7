"""Encoders by name, so configs can say ``encoder: DMGIN``.

Each entry is ``name -> (module, class name, config class name)``; imports are lazy so a model
that uses one encoder does not import the others.
"""

from __future__ import annotations

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
}


def encoder_config_class(name: str) -> type:
    module, _, config_name = _entry(name)
    return getattr(importlib.import_module(module), config_name)


def build_encoder(name: str, spec: EncoderSpec, config: Any | None = None) -> SequenceEncoder:
    """Instantiate encoder ``name``; ``config`` is its config dataclass or a dict of fields."""
    module, class_name, _ = _entry(name)
    mod = importlib.import_module(module)
    if isinstance(config, dict):
        config = encoder_config_class(name)(**config)
    return getattr(mod, class_name)(spec, config)


def _entry(name: str) -> tuple[str, str, str]:
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; choose from {sorted(ENCODERS)}")
    return ENCODERS[name]
