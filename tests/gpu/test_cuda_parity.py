"""Device parity: every encoder and the main ops give on CUDA what they give on the CPU.

Each case builds its module and inputs once on the CPU (same seed, same weights), runs them on
the CPU in float32 (the reference) and on the target device in a precision, and compares the
output, the auxiliary logits, the gradients of the query and history embeddings and of every
parameter, and the ``forward_candidates`` output (C=3 candidates per user).

- ``fp32`` on the target: ``atol = rtol = 1e-4`` elementwise (TF32 off). The ops must agree
  exactly on integer outputs (indices, masks, group ids) and to 1e-5 on float ones.
- ``bf16`` (autocast, float32 weights) and ``bf16-module`` (module and embeddings cast to
  bfloat16): compared with the float32 CPU reference by relative error in norm,
  ``||got - ref|| / ||ref||`` per tensor, bounded by ``BF16_REL`` (bfloat16 keeps 8 bits of
  mantissa, 3.9e-3 relative per rounding, and a forward+backward rounds at every layer;
  retrieval encoders may also pick a different near-tied row). The bounds were calibrated on the
  CPU's bfloat16 (the ``cpu`` cases below run the same comparison) with a margin of about 3x.

The ``cpu`` cases run everywhere (CI): the same code compares the CPU with itself in float32,
and the CPU's bfloat16 with float32, so the comparison logic cannot rot while no GPU is around.
The ``cuda`` cases are skipped without CUDA; ``bash scripts/gpu_check.sh`` runs them (docs/gpu.md).
Plain torch only: no torchrec, no fbgemm on this path.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pytest
import torch

from benchmarks.device import move_inputs, precision_context
from components.encoders.base import EncoderSpec, History, Query
from components.encoders.ciubm import CiUBM, CiUBMConfig, content_similarity
from components.encoders.example_inputs import random_history, random_query
from components.encoders.registry import build_encoder
from components.ops import group_index, grouping, jagged, retrieval

HAS_CUDA = torch.cuda.is_available()
DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not HAS_CUDA, reason="CUDA is not available")),
]
SPEC = EncoderSpec(embedding_dim=16, behavior_dim=4, num_behaviors=4, num_numeric=2, num_groups=12)
ITEMS, CATEGORIES = 60, 6
LENGTHS = [0, 1, 7, 40, 130, 3, 64, 25]  # an empty history, short ones, truncating ones
FP32 = {"atol": 1e-4, "rtol": 1e-4}
#: relative error in norm of a bfloat16 run against the float32 reference (see the docstring);
#: measured on the CPU's bfloat16: outputs <= 0.005, gradients <= 0.12 (a bf16-module's weight
#: gradients, summed in bfloat16)
BF16_REL = {"output": 0.015, "grad": 0.3}
#: encoders whose selection ranks bfloat16 scores (SIMSoft's inner products, ETA's SimHash of
#: bf16 matmuls, CiUBM's similarity from a bf16 content table): near-tied rows swap, so the
#: selected keys differ; measured <= 0.15 (outputs) and <= 0.36 (gradients). These bounds only
#: catch gross breakage; fp32 parity pins the selection exactly.
BF16_REL_RETRIEVAL = {"output": 0.4, "grad": 0.8}
RETRIEVAL_ON_BF16_SCORES = {
    ("SIMSoft", "bf16"),
    ("SIMSoft", "bf16-module"),
    ("ETA", "bf16"),
    ("ETA", "bf16-module"),
    ("CiUBM", "bf16-module"),
}
#: encoders x configurations (small windows, so that every selection truncates)
CASES: dict[str, tuple[str, dict[str, Any], str]] = {
    "DIN": ("DIN", {"max_len": 8}, "category"),
    "DINFull": ("DINFull", {}, "category"),
    "SIMHard": ("SIMHard", {"top_k": 5}, "category"),
    "SIMHard-group": ("SIMHard", {"top_k": 5, "search_key": "group"}, "category"),
    "SIMSoft": ("SIMSoft", {"top_k": 5, "aux_max_len": 50}, "category"),
    "ETA": ("ETA", {"top_k": 5}, "category"),
    "CiUBM": ("CiUBM", {"top_k": 5}, "category"),
    "DMGIN": ("DMGIN", {"max_groups": 4, "max_per_group": 3, "target_group_max_len": 4}, "group"),
    "DMGIN-category": (
        "DMGIN",
        {"max_groups": 4, "max_per_group": 3, "target_group_max_len": 4},
        "category",
    ),
    "DGIN": ("DMGIN", {"max_groups": 4, "max_per_group": 3, "target_group_max_len": 4}, "item"),
    "DMGIN-no-intra": (
        "DMGIN",
        {"max_groups": 4, "max_per_group": 3, "use_intra_group_transformer": False},
        "group",
    ),
}


#: the library's default configurations on long histories (CUDA only: sizes where kernels
#: switch strategy, chunking starts, and the CPU reference still takes about a second)
LARGE_CASES = {name: (name, {}, "category") for name in ("DIN", "DINFull", "SIMHard", "SIMSoft")}
LARGE_CASES.update({name: (name, {}, "category") for name in ("ETA", "CiUBM", "DMGIN")})
LARGE_LENGTHS = [20_000, 3, 9_000, 15_000]


@pytest.fixture(autouse=True)
def _no_tf32():
    """fp32 means IEEE float32 matmuls on CUDA too (TF32 keeps 10 mantissa bits)."""
    before = torch.backends.cuda.matmul.allow_tf32  # torch's default is already False
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32 = before


def make_inputs(
    group_key: str, seed: int = 0, lengths: list[int] = LENGTHS
) -> tuple[EncoderSpec, Query, History, Query]:
    """Contract-valid random inputs on the CPU; ``group_key`` says what ``group_ids`` hold
    (``group``: random interest groups, ``category``: the category ids, ``item``: the item ids,
    as DGIN keys groups). Returns ``(spec, query, history, candidates [B, 3])``."""
    spec = SPEC
    vocab = {"num_items": ITEMS, "num_categories": CATEGORIES}
    history = random_history(spec, lengths, seed=seed, **vocab)
    query = random_query(spec, len(lengths), seed=seed + 1, **vocab)
    candidates = random_query(spec, len(lengths), candidates=3, seed=seed + 2, **vocab)
    if group_key != "group":
        field = {"category": "category_ids", "item": "item_ids"}[group_key]
        spec = dataclasses.replace(SPEC, num_groups=ITEMS if group_key == "item" else CATEGORIES)
        history = dataclasses.replace(history, group_ids=getattr(history, field))
        query = dataclasses.replace(query, group_ids=getattr(query, field))
        candidates = dataclasses.replace(candidates, group_ids=getattr(candidates, field))
    return spec, query, history, candidates


def build_case(case: str, spec: EncoderSpec) -> torch.nn.Module:
    name, config, _ = CASES.get(case) or LARGE_CASES[case]
    torch.manual_seed(0)
    if name == "CiUBM":
        generator = torch.Generator().manual_seed(3)
        table = torch.randn(ITEMS, 8, generator=generator)
        return CiUBM(spec, CiUBMConfig(**config), content_embeddings=table)
    return build_encoder(name, spec, config)


def run_encoder(
    case: str, device: str, precision: str, lengths: list[int] = LENGTHS
) -> dict[str, torch.Tensor]:
    """Output, aux logits, gradients and ``forward_candidates`` of ``case`` on ``device`` in
    ``precision``, as float32 CPU tensors keyed by name."""
    group_key = (CASES.get(case) or LARGE_CASES[case])[2]
    spec, query, history, candidates = make_inputs(group_key, lengths=lengths)
    module = copy.deepcopy(build_case(case, spec)).to(device)
    if precision == "bf16-module":
        module = module.to(torch.bfloat16)
    dev = torch.device(device)
    q, h = move_inputs(query, history, dev, precision)
    c, _ = move_inputs(candidates, history, dev, precision, requires_grad=False)
    with precision_context(dev, precision):
        out, aux = module.forward_with_aux(q, h)
    # a fixed random weighting, so that no gradient is a plain sum
    weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(5)).to(dev)
    loss = (out.float() * weight).sum() + sum(logits.float().sum() for logits in aux.values())
    loss.backward()
    with torch.no_grad(), precision_context(dev, precision):
        ranked = module.forward_candidates(c, h)
    result = {"output": out, "candidates": ranked, "grad.query": q.embeddings.grad}
    result["grad.history"] = h.embeddings.grad
    result.update({f"aux.{name}": logits for name, logits in aux.items()})
    for name, param in module.named_parameters():
        if param.grad is not None:
            result[f"grad.{name}"] = param.grad
    return {k: v.detach().to("cpu", torch.float32) for k, v in result.items()}


def relative_error(got: torch.Tensor, ref: torch.Tensor) -> float:
    scale = float(ref.norm())
    return float((got - ref).norm()) / scale if scale > 0 else float(got.norm())


def bf16_bounds(case: str, precision: str) -> dict[str, float]:
    return BF16_REL_RETRIEVAL if (case, precision) in RETRIEVAL_ON_BF16_SCORES else BF16_REL


def compare(
    got: dict[str, torch.Tensor],
    ref: dict[str, torch.Tensor],
    precision: str,
    bounds: dict[str, float] = BF16_REL,
) -> None:
    assert got.keys() == ref.keys()
    for key in ref:
        assert got[key].shape == ref[key].shape, key
        assert torch.isfinite(got[key]).all(), key
        if precision == "fp32":
            torch.testing.assert_close(got[key], ref[key], **FP32, msg=lambda m, k=key: f"{k}: {m}")
        else:
            bound = bounds["grad" if key.startswith("grad.") else "output"]
            error = relative_error(got[key], ref[key])
            assert error <= bound, f"{key}: relative error {error:.4f} > {bound} ({precision})"


@pytest.mark.parametrize("precision", ["fp32", "bf16", "bf16-module"])
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", list(CASES))
def test_encoder_parity(case: str, device: str, precision: str) -> None:
    reference = run_encoder(case, "cpu", "fp32")
    compare(
        run_encoder(case, device, precision), reference, precision, bf16_bounds(case, precision)
    )


@pytest.mark.skipif(not HAS_CUDA, reason="CUDA is not available")
@pytest.mark.parametrize("case", list(LARGE_CASES))
def test_encoder_parity_long_histories(case: str) -> None:
    reference = run_encoder(case, "cpu", "fp32", LARGE_LENGTHS)
    compare(run_encoder(case, "cuda", "fp32", LARGE_LENGTHS), reference, "fp32")


def error_table(device: str) -> list[dict[str, Any]]:
    """Largest relative error in norm (outputs, gradients) of every case and precision on
    ``device`` against the float32 CPU reference: what ``scripts/gpu_check.sh`` records."""
    rows = []
    for case in CASES:
        reference = run_encoder(case, "cpu", "fp32")
        for precision in ("fp32", "bf16", "bf16-module"):
            got = run_encoder(case, device, precision)
            errors = {k: relative_error(got[k], reference[k]) for k in reference}
            worst = {
                kind: max((e, k) for k, e in errors.items() if k.startswith("grad.") == grads)
                for kind, grads in (("output", False), ("grad", True))
            }
            rows.append(
                {
                    "case": case,
                    "device": device,
                    "precision": precision,
                    **{f"{kind}_rel": round(e, 6) for kind, (e, _) in worst.items()},
                    "worst_grad": worst["grad"][1],
                }
            )
    return rows


def test_comparison_catches_a_difference() -> None:
    """The comparison fails on a real difference (so a passing parity test means something)."""
    reference = run_encoder("SIMHard", "cpu", "fp32")
    broken = dict(reference, output=reference["output"] * 1.01)
    with pytest.raises(AssertionError):
        compare(broken, reference, "fp32")
    broken = dict(reference, output=reference["output"] * 1.2)
    with pytest.raises(AssertionError):
        compare(broken, reference, "bf16")


# -- ops --------------------------------------------------------------------------------------


def op_inputs(seed: int = 0) -> dict[str, torch.Tensor]:
    history = random_history(SPEC, LENGTHS, num_items=ITEMS, num_categories=CATEGORIES, seed=seed)
    query = random_query(SPEC, len(LENGTHS), num_items=ITEMS, num_categories=CATEGORIES)
    generator = torch.Generator().manual_seed(seed)
    n = history.offsets[-1].item()
    return {
        "values": history.embeddings,
        "offsets": history.offsets,
        "keys": history.category_ids,
        "query_keys": query.category_ids,
        "groups": history.group_ids,
        "behaviors": history.behavior_ids,
        "age": history.age,
        "numeric": history.numeric,
        "items": history.item_ids,
        "query_items": query.item_ids,
        "scores": torch.randn(n, generator=generator),
        "planes": torch.randn(SPEC.embedding_dim, 24, generator=generator),
        "query_values": query.embeddings,
        "table": torch.randn(ITEMS, 8, generator=generator),
        "users": torch.randint(0, len(LENGTHS), (20,), generator=generator),
        "wanted": torch.randint(0, SPEC.num_groups, (20,), generator=generator),
    }


def _grouped(x: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    out = grouping.group_behaviors(
        x["groups"], x["offsets"], x["behaviors"], x["age"], x["numeric"], 4, 3, SPEC.num_behaviors
    )
    return tuple(getattr(out, f.name) for f in dataclasses.fields(out))


def _hamming(x: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    history_sig = retrieval.simhash_signatures(x["values"], x["planes"])
    query_sig = retrieval.simhash_signatures(x["query_values"], x["planes"])
    return history_sig, *retrieval.hamming_topk(history_sig, x["offsets"], query_sig, 5)


def _group_lookup(x: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    index = group_index.build_group_index(x["groups"], x["offsets"])
    return group_index.lookup_group(index, x["users"], x["wanted"], 4)


def _n(x: dict[str, torch.Tensor]) -> int:
    return x["values"].shape[0]


OPS = {
    "lengths_to_offsets": lambda x: (jagged.lengths_to_offsets(x["offsets"].diff()),),
    "segment_ids": lambda x: (jagged.segment_ids(x["offsets"], _n(x)),),
    "repeat_segments": lambda x: jagged.repeat_segments(x["offsets"], 3),
    "last_rows": lambda x: (jagged.last_rows(x["offsets"], 6),),
    "jagged_to_padded": lambda x: jagged.jagged_to_padded(x["values"], x["offsets"], 20),
    "jagged_to_padded_first": lambda x: jagged.jagged_to_padded(
        x["values"], x["offsets"], 20, keep="first"
    ),
    "padded_rows": lambda x: jagged.padded_rows(x["offsets"], 9),
    "gather_padded": lambda x: (
        jagged.gather_padded(x["values"], *jagged.padded_rows(x["offsets"], 9)),
    ),
    "hard_search": lambda x: retrieval.hard_search(x["keys"], x["offsets"], x["query_keys"], 5),
    "topk_by_score": lambda x: retrieval.topk_by_score(x["scores"], x["offsets"], 5),
    "hamming_topk": _hamming,
    "group_behaviors": _grouped,
    "group_index": _group_lookup,
    "content_similarity": lambda x: (
        content_similarity(x["table"], x["query_items"], x["items"], x["offsets"]),
    ),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op", list(OPS))
def test_op_parity(op: str, device: str) -> None:
    inputs = op_inputs()
    reference = OPS[op](inputs)
    got = OPS[op]({k: v.to(device) for k, v in inputs.items()})
    assert len(got) == len(reference)
    for i, (g, r) in enumerate(zip(got, reference, strict=True)):
        assert g.device.type == torch.device(device).type, f"{op}[{i}] came back on {g.device}"
        g = g.cpu()
        assert g.dtype == r.dtype and g.shape == r.shape, f"{op}[{i}]"
        if r.is_floating_point():
            torch.testing.assert_close(g, r, atol=1e-5, rtol=1e-5)
        else:
            assert torch.equal(g, r), f"{op}[{i}] differs"


@pytest.mark.parametrize("device", DEVICES)
def test_gather_padded_gradient_parity(device: str) -> None:
    """The in-place backward of ``gather_padded`` (``index_add_``) on the device."""
    inputs = op_inputs()
    index, mask = jagged.padded_rows(inputs["offsets"], 9)
    weight = torch.randn(
        *index.shape, SPEC.embedding_dim, generator=torch.Generator().manual_seed(2)
    )

    def grad(dev: str) -> torch.Tensor:
        values = inputs["values"].detach().to(dev).requires_grad_()
        out = jagged.gather_padded(values, index.to(dev), mask.to(dev))
        (out * weight.to(dev)).sum().backward()
        return values.grad.cpu()

    torch.testing.assert_close(grad(device), grad("cpu"), atol=1e-6, rtol=1e-6)
