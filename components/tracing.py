"""FX tracing of :class:`~components.model.LifelongCTRModel` at the TorchRec level.

The traced graph holds the TorchRec sparse arch (KJT -> EmbeddingBagCollection lookups ->
KeyedTensor), the batch attribute reads, and one call of the :class:`SequenceHead` as a leaf:
the graph TorchRec's train pipelines and inference rewrites work on (they shard, pipeline and
quantize the EBCs; the head stays an opaque dense module, as DLRM's over-arch would be if it
held ops with data-dependent shapes). The head itself is not symbolically traceable: its
encoders pad jagged histories to data-dependent widths (``int(lengths.max())``) and branch on
them.

Example:
    >>> from components.model import LifelongCTRModel, ModelConfig, Vocab
    >>> from pipelines.data.batch import random_batch
    >>> model = LifelongCTRModel(ModelConfig(encoder="DIN"), Vocab(100, 500, 20, 6, 1)).eval()
    >>> batch = random_batch([30, 5], users=100, items=500, categories=20, behaviors=6,
    ...                      num_numeric=1)
    >>> graph_module = trace_model(model)        # torch.fx.GraphModule
    >>> torch.equal(graph_module(batch).logits, model(batch).logits)
    True
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
