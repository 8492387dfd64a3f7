"""FX tracing of the CTR model: the traced GraphModule computes what the eager model does."""

from __future__ import annotations

import dataclasses

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


#: the only modules a traced head may still call as leaves: torch's own layers
TORCH_LEAVES = (
    torch.nn.Linear,
    torch.nn.LayerNorm,
    torch.nn.Dropout,
    torch.nn.ReLU,
    torch.nn.GELU,
    torch.nn.SiLU,
    torch.nn.Embedding,
    torch.nn.Sigmoid,
    torch.nn.PReLU,
)


def _jagged_batches(sizes: SyntheticSizes) -> list:
    from pipelines.data.batch import random_batch

    shapes = ([30, 5, 0, 12], [7], [0, 0, 3], [200, 1])  # other B, other lengths, empty ones
    vocab = {"users": sizes.users, "items": sizes.items, "categories": sizes.categories}
    return [
        random_batch(
            list(lengths), behaviors=SIZES.vocab.behaviors, num_numeric=1, seed=seed, **vocab
        )
        for seed, lengths in enumerate(shapes)
    ]


def _model_config(name: str):
    """The recipe's model config; ``DMGIN+item``: DMGIN's with the candidate item's statistics."""
    if name == "DMGIN+item":
        config = recipe_model_config("DMGIN")
        extra = {**config.encoder_config, "use_target_item_statistics": True}
        return dataclasses.replace(config, encoder_config=extra)
    return recipe_model_config(name)


@pytest.mark.parametrize("name", [*sorted(RECIPE_OF), "DMGIN+item"])
def test_head_and_encoder_trace_symbolically_and_equal_eager(name: str) -> None:
    """``head_leaf=False``: no module of the head is a leaf (the encoder's layers are traced op
    by op, its jagged ops are graph nodes), and the graph equals the eager model on batches of
    other sizes and lengths than any seen while tracing (FX saw none), with and without a
    lookup plan."""
    from pipelines.data.batch import restrict_item_lookup

    torch.manual_seed(0)
    config = _model_config(name)
    content = content_table(SIZES) if config.encoder == "CiUBM" else None
    model = LifelongCTRModel(config, SIZES.vocab, content_embeddings=content).eval()
    deep = trace_model(model, head_leaf=False)
    leaves = {n.target for n in deep.graph.nodes if n.op == "call_module"}
    assert "head" not in leaves and "head.encoder" not in leaves
    assert all(isinstance(deep.get_submodule(t), TORCH_LEAVES) for t in leaves if t[:5] == "head.")
    ops = {getattr(n.target, "__module__", "") for n in deep.graph.nodes if n.op == "call_function"}
    assert "components.ops.jagged" in ops or "components.ops.retrieval" in ops  # op nodes
    assert model.fx_lookup_plan is None  # restored

    planned = trace_model(model, head_leaf=False, lookup_plan=True)
    for batch in _jagged_batches(SIZES):
        with torch.no_grad():
            torch.testing.assert_close(deep(batch).logits, model(batch).logits)
            rows = model.history_rows(batch)
            if rows is not None:
                small = restrict_item_lookup(batch, rows)
                torch.testing.assert_close(planned(small).logits, model(small).logits)
                torch.testing.assert_close(planned(small).logits, model(batch).logits)
