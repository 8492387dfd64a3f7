"""FX tracing of :class:`~components.model.LifelongCTRModel` with TorchRec's tracer.

Two levels:

* ``trace_model(model)``: the TorchRec-level graph: the sparse arch (KJT -> EmbeddingBagCollection
  lookups -> KeyedTensor), the batch attribute reads, and one call of the :class:`SequenceHead`
  as a leaf. The graph TorchRec's train pipelines and inference rewrites work on (they shard,
  pipeline and quantize the EBCs; the head stays an opaque dense module).
* ``trace_model(model, head_leaf=False)``: the head and its encoder traced symbolically too,
  down to the ops: the jagged ops with data-dependent widths (``components.ops``: padding,
  top-K, grouping, hashing, clustering) are ``torch.fx.wrap`` leaves, called as graph nodes, and
  everything around them (projections, attention, HSTU, the over-arch) is recorded op by op.
  ``components.ops.symbolic.tracing()`` is true while FX traces, so the encoders take their
  branch-free paths (as under torch.export). FX cannot see whether ``batch.history_rows`` is
  None, so ``lookup_plan`` fixes that path: the graph then expects batches with (True) or
  without (False) a lookup plan.

Example:
    >>> from components.model import LifelongCTRModel, ModelConfig, Vocab
    >>> from pipelines.data.batch import random_batch
    >>> model = LifelongCTRModel(ModelConfig(encoder="DIN"), Vocab(100, 500, 20, 6, 1)).eval()
    >>> batch = random_batch([30, 5], users=100, items=500, categories=20, behaviors=6,
    ...                      num_numeric=1)
    >>> graph_module = trace_model(model)        # torch.fx.GraphModule
    >>> torch.equal(graph_module(batch).logits, model(batch).logits)
    True
    >>> deep = trace_model(model, head_leaf=False)  # the encoder traced op by op
    >>> torch.allclose(deep(batch).logits, model(batch).logits)
    True
"""

from __future__ import annotations

import torch
from torch import nn
from torchrec.fx import Tracer

from components.model import SequenceHead


class LifelongTracer(Tracer):
    """TorchRec's FX tracer; every :class:`SequenceHead` a leaf module unless ``head_leaf`` is
    False (then only TorchRec's own leaves, e.g. the EmbeddingBagCollections, stay leaves)."""

    def __init__(self, head_leaf: bool = True) -> None:
        super().__init__()
        self.head_leaf = head_leaf

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if self.head_leaf and isinstance(m, SequenceHead):
            return True
        return super().is_leaf_module(m, module_qualified_name)


def trace_model(
    model: nn.Module, *, head_leaf: bool = True, lookup_plan: bool = False
) -> torch.fx.GraphModule:
    """FX GraphModule of ``model`` (a LifelongCTRModel or any module holding one's parts).

    Args:
        head_leaf: keep the head one leaf call (False: trace the head and encoder op by op).
        lookup_plan: with ``head_leaf=False``, trace the path of batches carrying
            ``history_rows`` (``pipelines.data.batch.restrict_item_lookup``) instead of the
            full lookup.
    """
    owners = [m for m in model.modules() if hasattr(m, "fx_lookup_plan")] if not head_leaf else []
    for owner in owners:
        owner.fx_lookup_plan = lookup_plan
    try:
        graph = LifelongTracer(head_leaf).trace(model)
    finally:
        for owner in owners:
            owner.fx_lookup_plan = None
    return torch.fx.GraphModule(model, graph, model.__class__.__name__)
