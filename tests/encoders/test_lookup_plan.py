"""The lookup plan: an encoder reads only the history rows its ``history_rows`` names.

Encoder level, for every encoder and DMGIN/CiUBM variant, on random jagged inputs: the rows are
found from ids alone (embeddings of width 0); zeroing the embeddings of every other row, or
handing over only the named rows (``History.embedding_rows``), changes neither the output nor
the gradient of the rows kept (the others get none). Model level: the batch whose item KJT looks up only those rows gives the same logits and the same
embedding-table gradients as the full lookup.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from components.encoders.base import History, Query, SequenceEncoder
from components.encoders.registry import build_encoder
from components.model import LifelongCTRModel, ModelConfig, Vocab
from pipelines.data.batch import random_batch, restrict_item_lookup
from pipelines.train.lookup_plan import LookupPlanner

from .inputs import SMALL_WINDOWS, SPEC, make_inputs

DMGIN_WINDOWS = SMALL_WINDOWS["DMGIN"]
#: (registry name, encoder config): every encoder with small windows, plus the variants whose
#: rows differ (DMGIN without the intra-group transformer, the group attention or the target
#: attention, or with the candidate item's statistics; CiUBM with only its histogram, or over the whole history)
CASES: list[tuple[str, dict]] = [
    *SMALL_WINDOWS.items(),
    ("DMGIN", {**DMGIN_WINDOWS, "use_intra_group_transformer": False}),
    ("DMGIN", {**DMGIN_WINDOWS, "use_group_attention": False}),
    ("DMGIN", {**DMGIN_WINDOWS, "use_target_group_attention": False}),
    ("DMGIN", {**DMGIN_WINDOWS, "use_target_item_statistics": True}),
    ("CiUBM", {"top_k": 3, "use_attention": False}),
    ("CiUBM", {"top_k": None}),
]
#: most rows per sample each restricting encoder may name (the rest read everything: None)
ROWS_PER_SAMPLE = {"DIN": 6, "SIMHard": 3, "CiUBM": 3, "DMGIN": 3 * 2 + 3}


def _encoder(name: str, config: dict) -> SequenceEncoder:
    torch.manual_seed(0)
    encoder = build_encoder(name, SPEC, config)
    if name == "CiUBM":
        encoder.load_content(torch.nn.functional.normalize(torch.randn(50, 5), dim=1))
    return encoder.eval()


def _ids_only(query: Query, history: History) -> tuple[Query, History]:
    """What the planner has before the lookup: no embeddings (width 0)."""
    nothing = history.embeddings.new_zeros(history.embeddings.shape[0], 0)
    return (
        dataclasses.replace(query, embeddings=query.embeddings.new_zeros(len(query.item_ids), 0)),
        dataclasses.replace(history, embeddings=nothing, behavior_embeddings=nothing),
    )


def _case_id(case: tuple[str, dict]) -> str:
    name, config = case
    return name + "".join(f"-{k}={v}" for k, v in config.items() if k not in DMGIN_WINDOWS)


def _looked_up(
    history: History, rows: torch.Tensor, embeddings: torch.Tensor, behavior: torch.Tensor
) -> History:
    """``history`` as the model hands it over when only ``rows`` were looked up: their
    embeddings plus a zero row, and the row of each behavior among them."""
    rows = rows.unique()
    n, r = history.lengths.sum(), rows.numel()
    embedding_rows = torch.full((int(n),), r, dtype=torch.int64)
    embedding_rows[rows] = torch.arange(r)
    pad = torch.nn.functional.pad
    return dataclasses.replace(
        history,
        embeddings=pad(embeddings[rows], (0, 0, 0, 1)),
        behavior_embeddings=pad(behavior[rows], (0, 0, 0, 1)),
        embedding_rows=embedding_rows,
    )


@pytest.mark.parametrize("case", CASES, ids=_case_id)
@settings(max_examples=8, deadline=None)
@given(lengths=st.lists(st.integers(0, 40), min_size=1, max_size=4), seed=st.integers(0, 99))
def test_only_the_planned_rows_matter(
    case: tuple[str, dict], lengths: list[int], seed: int
) -> None:
    """Three ways to feed the encoder give the same output and embedding gradients: every row
    looked up; every row, but those outside the plan zeroed; only the planned rows looked up
    (``embedding_rows``). The full lookup's gradient vanishes outside the plan."""
    name, config = case
    encoder = _encoder(name, config)
    query, history = make_inputs(lengths, seed=seed, num_groups=SPEC.num_groups)
    n = history.embeddings.shape[0]
    with torch.no_grad():
        rows = encoder.history_rows(*_ids_only(query, history))
    kept = torch.ones(n, dtype=torch.bool)
    if rows is not None:
        assert rows.dtype == torch.int64 and rows.dim() == 1
        assert bool(((rows >= 0) & (rows < n)).all())
        kept = torch.zeros(n, dtype=torch.bool)
        kept[rows] = True
    weights = torch.randn(
        len(lengths), encoder.output_dim, generator=torch.Generator().manual_seed(seed)
    )

    def run(how: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        embeddings = history.embeddings.detach().clone().requires_grad_(True)
        behavior = history.behavior_embeddings.detach().clone().requires_grad_(True)
        if how == "compact":
            inputs = _looked_up(history, rows, embeddings, behavior)
        else:
            scale = kept.unsqueeze(1).to(embeddings.dtype) if how == "zeroed" else 1.0
            inputs = dataclasses.replace(
                history, embeddings=embeddings * scale, behavior_embeddings=behavior * scale
            )
        out = encoder(query, inputs)
        (out * weights).sum().backward()
        grads = [
            g if g is not None else torch.zeros_like(t)
            for t, g in ((embeddings, embeddings.grad), (behavior, behavior.grad))
        ]
        return out, grads[0], grads[1]

    full, full_grad, full_behavior_grad = run("full")
    assert not bool(full_grad[~kept].any()) and not bool(full_behavior_grad[~kept].any())
    for how in ("zeroed", "compact") if rows is not None else ("zeroed",):
        out, grad, behavior_grad = run(how)
        torch.testing.assert_close(out, full, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(grad, full_grad, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(behavior_grad, full_behavior_grad, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", sorted(SMALL_WINDOWS))
def test_restricting_encoders_name_few_rows_of_long_histories(name: str) -> None:
    encoder = _encoder(name, SMALL_WINDOWS[name])
    query, history = make_inputs([40, 0, 33], seed=1, num_groups=SPEC.num_groups)
    rows = encoder.history_rows(*_ids_only(query, history))
    if name not in ROWS_PER_SAMPLE:  # DINFull, SIMSoft, ETA read every row
        assert rows is None
        return
    assert rows is not None and 0 < rows.unique().numel() <= 2 * ROWS_PER_SAMPLE[name]


@pytest.mark.parametrize("flag", ["use_intra_group_transformer", "use_group_attention"])
def test_dmgin_without_group_slots_bounds_only_its_target_rows(flag: str) -> None:
    """33 rows over 3 samples: fewer than twice the full DMGIN's 3 x (3 x 2 + 3) slots (it looks
    up everything), but more than twice the 3 x 3 target rows a variant without the group slots
    reads (it names them)."""
    query, history = make_inputs([20, 0, 13], seed=2, num_groups=SPEC.num_groups)
    inputs = _ids_only(query, history)
    assert _encoder("DMGIN", DMGIN_WINDOWS).history_rows(*inputs) is None
    rows = _encoder("DMGIN", {**DMGIN_WINDOWS, flag: False}).history_rows(*inputs)
    assert rows is not None and rows.numel() <= 3 * DMGIN_WINDOWS["target_group_max_len"]


VOCAB = Vocab(users=20, items=50, categories=6, behaviors=4, num_numeric=2)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_model_with_planned_lookup_matches_the_full_lookup(case: tuple[str, dict]) -> None:
    name, encoder_config = case
    torch.manual_seed(0)
    content = None
    if name == "CiUBM":
        content = torch.nn.functional.normalize(torch.randn(VOCAB.items, 5), dim=1)
    config = ModelConfig(
        encoder=name,
        embedding_dim=8,
        behavior_dim=4,
        over_arch=[16],
        encoder_config=encoder_config,
    )
    model = LifelongCTRModel(config, VOCAB, content_embeddings=content).eval()
    batch = random_batch(
        [45, 0, 30, 7], users=20, items=50, categories=6, behaviors=4, num_numeric=2, seed=2
    )
    planned = LookupPlanner(model)(batch)
    if name in ROWS_PER_SAMPLE and encoder_config.get("top_k", 0) is not None:
        assert planned.items.stride() < batch.items.stride(), "the plan must skip rows"

    def logits_and_grads(which: object) -> tuple[torch.Tensor, list[torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        logits = model(which).logits
        logits.sum().backward()
        tables = [*model.item_ebc.embedding_bags.values(), *model.user_ebc.embedding_bags.values()]
        return logits.detach(), [t.weight.grad.clone() for t in tables]

    full_logits, full_grads = logits_and_grads(batch)
    plan_logits, plan_grads = logits_and_grads(planned)
    torch.testing.assert_close(plan_logits, full_logits, atol=1e-5, rtol=1e-4)
    for got, want in zip(plan_grads, full_grads, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    assert planned.item_ids is batch.item_ids


def test_restrict_item_lookup_keeps_candidates_and_named_rows() -> None:
    batch = random_batch([3, 2], users=10, items=50, categories=5, behaviors=3, seed=4)
    small = restrict_item_lookup(batch, torch.tensor([4, 0, 4]))
    assert small.history_rows.tolist() == [0, 4]
    assert small.items.stride() == 4 and bool((small.items.lengths() == 1).all())
    expected = batch.item_ids[:, [0, 1, 2, 6]].reshape(-1)  # key-major, like make_batch
    assert torch.equal(small.items.values(), expected)
    assert torch.equal(small.to(torch.device("cpu")).history_rows, small.history_rows)
    with pytest.raises(ValueError, match="N = 5"):
        restrict_item_lookup(batch, torch.tensor([5]))
