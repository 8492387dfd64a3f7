"""A model split at the embedding boundary, loadable with torch + torchrec only.

``export_split(model, DIR)`` writes a directory (atomically: a temporary sibling, then a rename)::

    manifest.json   format, encoder, inputs, the dense part's kind and symbolic dims, checks
    sparse.pt       the sparse part: both EmbeddingBagCollections' table configs and weights
                    (plain dicts of tensors, ints and strings: ``torch.load(weights_only=True)``)
    dense.pt2       the dense part (:class:`~pipelines.serve.dense.DenseRanker`): an
                    AOTInductor package (``aoti=True``) or a ``torch.export.save`` program
    load.py         :mod:`pipelines.serve.standalone_loader`, which imports torch and torchrec
                    only: ``StandaloneRanker(DIR)(ids...) -> probabilities [B, C]``

The dense program is accepted only if it equals the eager model (``model.head.rank`` after the
model's own EBC lookups) to ``atol`` on requests of other shapes than the export example.
:func:`fresh_process_rank` loads exports in a new Python process where ``components``,
``pipelines`` and ``benchmarks`` cannot be imported (the cwd outside the repository, no
PYTHONPATH), as a user without this project would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torchrec import KeyedJaggedTensor

from components.model import LifelongCTRModel
from pipelines.serve.dense import DENSE_INPUTS, aoti_package, export_dense
from pipelines.serve.plain_model import ExportError, first_error_line
from pipelines.serve.standalone_loader import FORMAT, ITEM_KEYS, sparse_lookup

FORMAT_VERSION = 1
LOADER = Path(__file__).with_name("standalone_loader.py")

#: positional inputs of the standalone ranker (name, shape, dtype): ids, not embeddings
REQUEST_INPUTS: tuple[tuple[str, str, str], ...] = (
    ("user", "[B]", "int64"),
    ("candidate_item", "[B, C]", "int64"),
    ("candidate_category", "[B, C]", "int64"),
    ("history_lengths", "[B]", "int64"),
    ("history_item", "[N]", "int64"),
    ("history_category", "[N]", "int64"),
    ("history_behavior", "[N]", "int64"),
    ("history_age", "[N]", "float32"),
    ("history_numeric", "[N, F]", "float32"),
)

#: export example: B = 3, C = 4, N = 37 (all >= 2 and distinct, so no size is specialized)
EXAMPLE_LENGTHS, EXAMPLE_CANDIDATES = (5, 30, 2), 4


def random_request(
    model: LifelongCTRModel, lengths: Sequence[int], candidates: int, seed: int = 0
) -> tuple[torch.Tensor, ...]:
    """:data:`REQUEST_INPUTS` for ``len(lengths)`` users with ``candidates`` each: ids drawn in
    the model's vocabularies (1..size-1), ages decreasing within each history, numeric >= 0."""
    sizes = {c.name: c.num_embeddings for c in model.item_ebc.embedding_bag_configs()}
    users = model.user_ebc.embedding_bag_configs()[0].num_embeddings
    generator = torch.Generator().manual_seed(seed)
    b, n = len(lengths), int(sum(lengths))

    def ids(table: str, *shape: int) -> torch.Tensor:
        size = sizes[table]
        return torch.randint(min(1, size - 1), size, shape, generator=generator)

    steps = [
        torch.sort(torch.rand(k, generator=generator), descending=True).values for k in lengths
    ]
    return (
        torch.randint(0, users, (b,), generator=generator),
        ids("item", b, candidates),
        ids("category", b, candidates),
        torch.tensor(list(lengths), dtype=torch.int64),
        ids("item", n),
        ids("category", n),
        ids("behavior", n),
        1.0 + torch.cat([torch.empty(0), *steps]) * 1e7,
        torch.rand(n, model.head.spec.num_numeric, generator=generator) * 5.0,
    )


def dense_inputs(
    model: LifelongCTRModel, request: Sequence[torch.Tensor]
) -> tuple[torch.Tensor, ...]:
    """The :data:`~pipelines.serve.dense.DENSE_INPUTS` of a request (the sparse part, eagerly)."""
    user, cand_item, cand_cat, lengths, item, category, behavior, age, numeric = request
    with torch.no_grad():
        looked_up = sparse_lookup(
            model.user_ebc, model.item_ebc, user, cand_item, cand_cat, item, category, behavior
        )
    return (*looked_up, lengths, age, numeric)


@torch.no_grad()
def eager_rank(model: LifelongCTRModel, request: Sequence[torch.Tensor]) -> torch.Tensor:
    """``[B, C]`` probabilities of the eager model: its EBCs on KeyedJaggedTensors, then
    ``model.head.rank`` (the reference every export is checked against)."""
    user, cand_item, cand_cat, lengths, item, category, behavior, age, numeric = request
    b, c = cand_item.shape
    users = KeyedJaggedTensor.from_lengths_sync(["user_id"], user, torch.ones_like(user))
    rows = [
        torch.cat([cand_item.flatten(), item]),
        torch.cat([cand_cat.flatten(), category]),
        torch.cat([torch.zeros(b * c, dtype=torch.int64), behavior]),
    ]
    values = torch.cat(rows)
    items = KeyedJaggedTensor.from_lengths_sync(list(ITEM_KEYS), values, torch.ones_like(values))
    logits = model.head.rank(
        model.user_ebc(users), model.item_ebc(items), values, lengths, age, numeric, c
    )
    return torch.sigmoid(logits.float())


def sparse_payload(model: LifelongCTRModel) -> dict[str, Any]:
    """Table configs and weights of both EBCs, as plain data (``weights_only`` loadable)."""
    collections, weights = {}, {}
    for name, ebc in (("user", model.user_ebc), ("item", model.item_ebc)):
        collections[name] = [
            {
                "name": t.name,
                "embedding_dim": t.embedding_dim,
                "num_embeddings": t.num_embeddings,
                "feature_names": list(t.feature_names),
                "pooling": t.pooling.name,
            }
            for t in ebc.embedding_bag_configs()
        ]
        weights[name] = {k: v.detach().cpu().clone() for k, v in ebc.state_dict().items()}
    return {"collections": collections, "weights": weights}


def _guards(program: torch.export.ExportedProgram) -> dict[str, Any]:
    """What the program assumes: symbol ranges and the number of runtime assertions."""
    asserts = sum(
        node.op == "call_function" and "assert" in str(node.target) for node in program.graph.nodes
    )
    ranges = {str(k): str(v) for k, v in program.range_constraints.items()}
    return {"runtime_assertions": asserts, "ranges": ranges}


def export_split(
    model: LifelongCTRModel,
    out: str | os.PathLike[str],
    *,
    aoti: bool = False,
    checks: Sequence[tuple[Sequence[int], int]] = (((7, 0, 12, 41, 1), 6), ((3,), 1)),
    atol: float = 1e-5,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Export ``model`` (eval mode) split in two at ``out`` (a directory); returns the manifest.

    ``checks``: ``(history lengths, candidates)`` of requests the dense program must match the
    eager model on before anything is written. Raises :class:`ExportError` (naming the encoder
    and the first failing call) when the dense part does not export or does not match.
    """
    model = model.eval()
    encoder = model.head.config.encoder
    example = random_request(model, EXAMPLE_LENGTHS, EXAMPLE_CANDIDATES)
    try:
        program = export_dense(model.head, dense_inputs(model, example))
    except Exception as err:  # any failure is the user's encoder's: say where
        raise ExportError(
            f"encoder {encoder}: its dense part does not torch.export ({first_error_line(err)}); "
            "write it with --format state_dict (needs this package's code to load)"
        ) from err
    worst = 0.0
    with torch.no_grad():
        for seed, (lengths, candidates) in enumerate(checks, start=1):
            request = random_request(model, lengths, candidates, seed=seed)
            got = program.module()(*dense_inputs(model, request))
            worst = max(worst, float((got - eager_rank(model, request)).abs().max()))
    if worst > atol:
        raise ExportError(f"encoder {encoder}: exported dense part differs by {worst:.2e}")
    out = Path(out)
    if out.exists() and not (out / "manifest.json").is_file() and any(out.iterdir()):
        raise ExportError(f"{out}: exists and is not an export directory (refusing to replace)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        torch.save(sparse_payload(model), tmp / "sparse.pt")
        seconds = None
        if aoti:
            seconds = aoti_package(program, tmp / "dense.pt2")
        else:
            torch.export.save(program, str(tmp / "dense.pt2"))
        shutil.copyfile(LOADER, tmp / "load.py")
        manifest = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "encoder": encoder,
            "inputs": [{"name": n, "shape": s, "dtype": d} for n, s, d in REQUEST_INPUTS],
            "dense_inputs": [{"name": n, "shape": s, "dtype": d} for n, s, d in DENSE_INPUTS],
            "output": {"name": "probability", "shape": "[B, C]", "dtype": "float32"},
            "dense": {
                "file": "dense.pt2",
                "kind": "aoti" if aoti else "torch.export",
                "device": "cpu",
                "compile_seconds": seconds,
                "dims": {"B": ">= 1", "C": ">= 1", "N": ">= 0"},
                **_guards(program),
            },
            "checked_max_abs_diff": worst,
            **(extra or {}),
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest


#: the fresh process: project packages unimportable, then every export scored
_CHILD = textwrap.dedent(
    """
    import importlib.abc, importlib.util, sys

    BLOCKED = ("components", "pipelines", "benchmarks", "recipes", "tools")

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{name} is blocked: an export must load without lifelongrec")
            return None

    sys.meta_path.insert(0, Block())
    import torch

    cases = torch.load(sys.argv[1], weights_only=True)
    outputs = []
    for i, case in enumerate(cases):
        spec = importlib.util.spec_from_file_location(f"export_{i}", case["dir"] + "/load.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        ranker = module.StandaloneRanker(case["dir"])
        outputs.append([ranker(*request) for request in case["requests"]])
    loaded = sorted({m.split(".")[0] for m in sys.modules} & set(BLOCKED))
    assert not loaded, loaded
    torch.save(outputs, sys.argv[2])
    print("scored", len(cases), "exports")
    """
)


def fresh_process_rank(
    cases: Sequence[tuple[Path, Sequence[Sequence[torch.Tensor]]]], timeout: float = 900
) -> list[list[torch.Tensor]]:
    """Score ``(export dir, requests)`` pairs in a new process that cannot import this project
    (cwd: a temporary directory; PYTHONPATH unset); the outputs ``[B, C]`` per request."""
    with tempfile.TemporaryDirectory() as work:
        inputs, outputs = Path(work) / "cases.pt", Path(work) / "out.pt"
        payload = [
            {"dir": str(Path(d).resolve()), "requests": [list(r) for r in rs]} for d, rs in cases
        ]
        torch.save(payload, inputs)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        result = subprocess.run(
            [sys.executable, "-c", _CHILD, str(inputs), str(outputs)],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise ExportError(f"fresh-process load failed: {_error_lines(result.stderr)}")
        return torch.load(outputs, weights_only=True)


def _error_lines(stderr: str, limit: int = 3000) -> str:
    """The informative part of a child's stderr: C++ backtrace frames dropped (a c10::Error
    prints its message first, then dozens of ``frame #k`` lines), the rest's last ``limit``
    characters."""
    lines = [line for line in stderr.splitlines() if not line.lstrip().startswith("frame #")]
    return "\n".join(lines).strip()[-limit:]
