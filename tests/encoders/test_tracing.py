"""FX tracing of the CTR model: the traced GraphModule computes what the eager model does."""

from __future__ import annotations

import pytest
import torch

from benchmarks.synthetic_inputs import (
    RECIPE_OF,
    SyntheticSizes,
    content_table,
    ctr_batch,
    recipe_model_config,
)
from components.model import LifelongCTRModel, SequenceHead
from components.tracing import trace_model

SIZES = SyntheticSizes(users=50, items=300, categories=20)


@pytest.mark.parametrize("name", sorted(RECIPE_OF))
def test_traced_model_equals_eager_on_batches_of_other_shapes(name: str) -> None:
    torch.manual_seed(0)
    config = recipe_model_config(name)
    content = content_table(SIZES) if config.encoder == "CiUBM" else None
    model = LifelongCTRModel(config, SIZES.vocab, content_embeddings=content).eval()
    traced = trace_model(model)

    calls = [n for n in traced.graph.nodes if n.op == "call_module"]
    heads = [n for n in calls if isinstance(traced.get_submodule(n.target), SequenceHead)]
    assert len(heads) == 1  # the head is one leaf call
    lookups = [n.target for n in calls if "embedding_bags" in str(n.target)]
    assert {t.rsplit(".", 1)[-1] for t in lookups} == {"user", "item", "category", "behavior"}

    for batch_size, length, seed in ((4, 30, 0), (7, 3, 1), (1, 0, 2)):
        batch = ctr_batch(batch_size, length, SIZES, seed=seed)
        with torch.no_grad():
            expected, got = model(batch), traced(batch)
        torch.testing.assert_close(got.logits, expected.logits)
        assert got.aux_logits.keys() == expected.aux_logits.keys()
