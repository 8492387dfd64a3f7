"""The dense part of a CTR model (head + encoder, after the embedding lookups) as a
``torch.export`` program with symbolic B, C and N, and its AOTInductor package.

The model is split at the embedding boundary: the sparse part (the TorchRec
EmbeddingBagCollections, :mod:`pipelines.serve.split_export`) looks the ids up; the dense part is
:class:`DenseRanker`, a function of plain tensors::

    ranker(user_emb [B, E], candidate_emb [B, C, D], candidate_item [B, C],
           candidate_category [B, C], history_emb [N, D], history_behavior_emb [N, D_b],
           history_item [N], history_category [N], history_behavior [N], history_lengths [B],
           history_age [N], history_numeric [N, F]) -> probability [B, C] (float32)

equal to ``sigmoid(model.head.rank(...))`` of the eager model. It is exported with
``B = Dim("batch", min=1)``, ``C = Dim("candidates", min=1)`` and ``N = Dim("rows", min=0)``
under size-oblivious reasoning (``backed_size_oblivious``: no 0/1 specialization, so one program
serves B = 1, C = 1 and empty histories); every size the encoders read from values is an
unbacked symbol bounded with ``torch._check`` (:mod:`components.ops.symbolic`), kept in the
program as runtime assertions.

Example (:mod:`pipelines.serve.split_export` makes the inputs from ids):
    >>> from components.model import LifelongCTRModel, ModelConfig, Vocab
    >>> from pipelines.serve.split_export import dense_inputs, random_request
    >>> model = LifelongCTRModel(ModelConfig(encoder="SIMHard"), Vocab(50, 300, 20, 3, 1)).eval()
    >>> inputs = dense_inputs(model, random_request(model, [4, 0, 9], candidates=2))
    >>> DenseRanker(model.head)(*inputs).shape
    torch.Size([3, 2])
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch import nn

from components.head import SequenceHead

#: positional inputs of :class:`DenseRanker` (name, shape, dtype)
DENSE_INPUTS: tuple[tuple[str, str, str], ...] = (
    ("user_emb", "[B, E]", "float32"),
    ("candidate_emb", "[B, C, D]", "float32"),
    ("candidate_item", "[B, C]", "int64"),
    ("candidate_category", "[B, C]", "int64"),
    ("history_emb", "[N, D]", "float32"),
    ("history_behavior_emb", "[N, D_b]", "float32"),
    ("history_item", "[N]", "int64"),
    ("history_category", "[N]", "int64"),
    ("history_behavior", "[N]", "int64"),
    ("history_lengths", "[B]", "int64"),
    ("history_age", "[N]", "float32"),
    ("history_numeric", "[N, F]", "float32"),
)


class DenseRanker(nn.Module):
    """:meth:`SequenceHead.rank_embeddings` on the :data:`DENSE_INPUTS`, as probabilities.

    ``user_emb`` is an input even when the model does not read it (one signature for all).
    """

    def __init__(self, head: SequenceHead) -> None:
        super().__init__()
        self.head = head

    def forward(
        self,
        user_emb: torch.Tensor,
        candidate_emb: torch.Tensor,
        candidate_item: torch.Tensor,
        candidate_category: torch.Tensor,
        history_emb: torch.Tensor,
        history_behavior_emb: torch.Tensor,
        history_item: torch.Tensor,
        history_category: torch.Tensor,
        history_behavior: torch.Tensor,
        history_lengths: torch.Tensor,
        history_age: torch.Tensor,
        history_numeric: torch.Tensor,
    ) -> torch.Tensor:
        logits = self.head.rank_embeddings(
            user_emb if self.head.config.use_user_embedding else None,
            candidate_emb,
            candidate_item,
            candidate_category,
            history_emb,
            history_behavior_emb,
            history_item,
            history_category,
            history_behavior,
            history_lengths,
            history_age,
            history_numeric,
        )
        return torch.sigmoid(logits.float())


def dense_dynamic_shapes() -> tuple[dict[int, torch.export.Dim], ...]:
    """``dynamic_shapes`` for :data:`DENSE_INPUTS`: B, C and N symbolic, feature dims static."""
    batch = torch.export.Dim("batch", min=1)
    candidates = torch.export.Dim("candidates", min=1)
    rows = torch.export.Dim("rows", min=0)
    out: list[dict[int, torch.export.Dim]] = []
    for _, shape, _ in DENSE_INPUTS:
        dims = shape.strip("[]").split(", ")
        by_name = {"B": batch, "C": candidates, "N": rows}
        out.append({i: by_name[d] for i, d in enumerate(dims) if d in by_name})
    return tuple(out)


@contextlib.contextmanager
def size_oblivious() -> Iterator[None]:
    """Backed sizes without 0/1 specialization (an example with B, C, N >= 2 then also covers
    1 and 0)."""
    with torch.fx.experimental._config.patch(backed_size_oblivious=True):
        yield


def export_size_oblivious(
    module: nn.Module, example: Sequence[torch.Tensor], dynamic_shapes: Sequence[dict]
) -> torch.export.ExportedProgram:
    """``torch.export`` (non-strict, no grad, size-oblivious) of ``module`` on ``example``:
    how the dense part is exported, also for checking one op or layer's traced path."""
    with torch.no_grad(), size_oblivious():
        return torch.export.export(
            module, tuple(example), dynamic_shapes=tuple(dynamic_shapes), strict=False
        )


def export_dense(
    head: SequenceHead, example: Sequence[torch.Tensor]
) -> torch.export.ExportedProgram:
    """``torch.export`` of :class:`DenseRanker` (eval mode, no grad) on ``example`` inputs."""
    return export_size_oblivious(DenseRanker(head).eval(), example, dense_dynamic_shapes())


def aoti_package(program: torch.export.ExportedProgram, path: str | Path) -> float:
    """Compile ``program`` with AOTInductor into a ``.pt2`` package at ``path`` (for the device
    its tensors are on); returns the compile seconds."""
    start = time.perf_counter()
    with size_oblivious(), warnings.catch_warnings():
        # torch's own graph copy warns about its own deprecated pytree class (torch 2.13)
        warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
        torch._inductor.aoti_compile_and_package(program, package_path=str(path))
    return time.perf_counter() - start
