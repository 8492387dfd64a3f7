"""lifelongrec components: TorchRec-native sequence encoders and a CTR model.

Every encoder follows one contract (``components.encoders.base``):
``encoder(query: Query, history: History) -> [B, output_dim]``.
"""

from components.encoders.base import (
    EncoderSpec,
    History,
    Query,
    SequenceEncoder,
    repeat_history,
    take_history_rows,
)
from components.encoders.ciubm import CiUBM, CiUBMConfig
from components.encoders.din import DIN, DINConfig, DINFull, DINFullConfig
from components.encoders.dmgin import DMGIN, DMGINConfig, DMGINUserState
from components.encoders.eta import ETA, ETAConfig
from components.encoders.example_inputs import random_history, random_query
from components.encoders.registry import build_encoder
from components.encoders.sdim import SDIM, SDIMConfig
from components.encoders.sim import SIMConfig, SIMHard, SIMSoft
from components.encoders.twin import TWIN, TWINConfig
from components.encoders.twin_v2 import TWINV2, TWINV2Config
from components.model_config import ModelConfig, ModelOutput, Vocab

#: names whose modules import torchrec, imported on first use (PEP 562), so that
#: ``components.ops``, ``.layers`` and ``.encoders`` stay importable with plain torch
_LAZY = {
    "LifelongCTRModel": "components.model",
    "LifelongTracer": "components.tracing",
    "trace_model": "components.tracing",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "DIN",
    "DINConfig",
    "DINFull",
    "DINFullConfig",
    "DMGIN",
    "DMGINConfig",
    "DMGINUserState",
    "ETA",
    "ETAConfig",
    "SIMConfig",
    "SIMHard",
    "SIMSoft",
    "SDIM",
    "SDIMConfig",
    "TWIN",
    "TWINConfig",
    "TWINV2",
    "TWINV2Config",
    "CiUBM",
    "CiUBMConfig",
    "EncoderSpec",
    "History",
    "Query",
    "SequenceEncoder",
    "repeat_history",
    "take_history_rows",
    "random_history",
    "random_query",
    "build_encoder",
    "LifelongCTRModel",
    "ModelConfig",
    "ModelOutput",
    "Vocab",
    "LifelongTracer",
    "trace_model",
]
