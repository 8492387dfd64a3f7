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
from components.encoders.sim import SIMConfig, SIMHard, SIMSoft
from components.model import LifelongCTRModel, ModelConfig, ModelOutput, Vocab
from components.tracing import LifelongTracer, trace_model

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
