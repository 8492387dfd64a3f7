"""The split export (sparse EBCs + dense torch.export / AOTInductor program) loads in a process
without this project and ranks exactly as the eager model does, for every registered encoder.

One module fixture exports every encoder of the registry (new encoders are covered once they are
registered) and scores all of them in one fresh process (``components``/``pipelines`` imports
blocked, cwd outside the repository, no PYTHONPATH), on requests of other shapes than the export
example: other B, C and N, an empty history, B = C = 1, all histories empty.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from components.encoders.base import History, Query, SequenceEncoder
from components.encoders.registry import ENCODERS
from pipelines.serve import check_all, split_export
from pipelines.serve.plain_model import ExportError

#: compiled with AOTInductor in CI (the others: torch.export programs); every encoder is
#: compiled by ``python -m pipelines.export --check-all`` (docs/serving.md)
AOTI_IN_CI = ("DMGIN", "SIMHard")


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    out = tmp_path_factory.mktemp("exports")
    records = check_all.check_encoders(sorted(ENCODERS), out, aoti=AOTI_IN_CI, show_progress=False)
    manifests = {name: json.loads((out / name / "manifest.json").read_text()) for name in ENCODERS}
    return {r["encoder"]: {**r, "manifest": manifests[r["encoder"]]} for r in records}


@pytest.mark.parametrize("encoder", sorted(ENCODERS))
def test_export_loads_without_project_code_and_equals_eager(checked: dict, encoder: str) -> None:
    record = checked[encoder]
    assert record["max_abs_diff"] <= 1e-5, record
    assert record["ok"], record
    manifest = record["manifest"]
    assert manifest["encoder"] == encoder
    assert manifest["dense"]["kind"] == ("aoti" if encoder in AOTI_IN_CI else "torch.export")
    assert manifest["dense"]["dims"] == {"B": ">= 1", "C": ">= 1", "N": ">= 0"}


def test_checked_requests_differ_from_the_export_example() -> None:
    example_b, example_c = len(split_export.EXAMPLE_LENGTHS), split_export.EXAMPLE_CANDIDATES
    for lengths, candidates in check_all.CHECK_REQUESTS:
        assert (len(lengths), candidates) != (example_b, example_c)
    shapes = {(len(lengths), c, sum(lengths)) for lengths, c in check_all.CHECK_REQUESTS}
    assert (1, 1) in {(b, c) for b, c, _ in shapes} and any(n == 0 for _, _, n in shapes)


def test_fresh_process_cannot_import_the_project(tmp_path: Path) -> None:
    """The child's blocker is real: a loader that imports project code fails there."""
    (tmp_path / "load.py").write_text("import components  # would need this project\n")
    with pytest.raises(ExportError, match="components is blocked"):
        split_export.fresh_process_rank([(tmp_path, [])])


@pytest.mark.parametrize("encoder", sorted(ENCODERS))
def test_exported_scores_are_not_constant(checked: dict, encoder: str) -> None:
    """Candidates of one user get different probabilities from the loaded export (a constant
    or candidate-blind program would pass an equality check against a broken eager model)."""
    for (lengths, candidates), got in zip(check_all.CHECK_REQUESTS, checked[encoder]["outputs"]):
        assert got.shape == (len(lengths), candidates)
        if candidates > 1:
            assert float(got.std(dim=1).max()) > 1e-4, (encoder, lengths, candidates)


class _LoopEncoder(SequenceEncoder):
    """A user encoder that reads sizes as Python ints in a loop (cannot export)."""

    def __init__(self, spec, config=None) -> None:
        super().__init__()
        self.output_dim = spec.embedding_dim
        self.proj = nn.Linear(spec.embedding_dim, spec.embedding_dim)

    def forward(self, query: Query, history: History) -> torch.Tensor:
        rows = [
            history.embeddings[int(s) : int(e)].mean(0)
            if int(e) > int(s)
            else query.embeddings[0] * 0
            for s, e in zip(
                history.offsets[:-1].tolist(), history.offsets[1:].tolist(), strict=True
            )
        ]
        return self.proj(torch.stack(rows)) * query.embeddings


def test_encoder_that_cannot_export_says_why(tmp_path: Path) -> None:
    model = check_all.small_model("DIN")
    model.head.encoder = _LoopEncoder(model.head.spec)
    with pytest.raises(
        ExportError, match=r"encoder DIN: its dense part does not torch.export .*state_dict"
    ):
        split_export.export_split(model, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing half-written
