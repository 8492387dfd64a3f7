"""FX tracing of :class:`~components.model.LifelongCTRModel` at the TorchRec level.

The traced graph holds the TorchRec sparse arch (KJT -> EmbeddingBagCollection lookups ->
KeyedTensor), the batch attribute reads, and one call of the :class:`SequenceHead` as a leaf:
the graph TorchRec's train pipelines and inference rewrites work on (they shard, pipeline and
quantize the EBCs; the head stays an opaque dense module, as DLRM's over-arch would be if it
held ops with data-dependent shapes). The head itself is not symbolically traceable: its
encoders pad jagged histories to data-dependent widths (``int(lengths.max())``) and branch on
them.

Example:
    >>> graph_module = trace_model(model)        # torch.fx.GraphModule
    >>> graph_module(batch).logits.shape          # same outputs as model(batch)
    torch.Size([B])
"""

from __future__ import annotations

import torch
from torch import nn
from torchrec.fx import Tracer

from components.model import SequenceHead


class LifelongTracer(Tracer):
    """TorchRec's FX tracer with every :class:`SequenceHead` kept as a leaf module."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, SequenceHead) or super().is_leaf_module(m, module_qualified_name)


def trace_model(model: nn.Module) -> torch.fx.GraphModule:
    """FX GraphModule of ``model`` (a LifelongCTRModel or any module holding one's parts)."""
    graph = LifelongTracer().trace(model)
    return torch.fx.GraphModule(model, graph, model.__class__.__name__)
