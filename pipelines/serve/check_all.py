"""``python -m pipelines.export --check-all``: export every registered encoder split in two
(AOTInductor by default) and check each in a fresh process without this project's code.

For every encoder of :data:`components.encoders.registry.ENCODERS` a small random
:class:`~components.model.LifelongCTRModel` is exported with
:func:`~pipelines.serve.split_export.export_split` and scored by
:func:`~pipelines.serve.split_export.fresh_process_rank` on requests of other shapes than the
export example (other B, C and N, an empty history, B = C = 1); the largest difference from the
eager model must stay within 1e-5. The per-encoder export and compile seconds and differences go
to ``--report`` (JSON) and to stdout.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from components.encoders.registry import ENCODERS, resolve_encoder
from components.model import LifelongCTRModel, ModelConfig, Vocab
from pipelines.console import progress
from pipelines.serve.plain_model import ExportError
from pipelines.serve.split_export import (
    eager_rank,
    export_split,
    fresh_process_rank,
    random_request,
)

#: the small vocabulary of every checked model (users, items, categories, behaviors, numeric)
CHECK_VOCAB = Vocab(50, 300, 20, 4, 2)
#: requests of other shapes than the export example: (history lengths, candidates)
CHECK_REQUESTS: tuple[tuple[tuple[int, ...], int], ...] = (
    ((7, 0, 12, 41, 1), 6),
    ((3,), 1),
    ((0, 0), 2),
    ((200, 9), 25),
)


def small_model(encoder: str, seed: int = 0) -> LifelongCTRModel:
    """A random eval-mode model around ``encoder`` (content table for encoders that take one)."""
    torch.manual_seed(seed)
    encoder_class, _ = resolve_encoder(encoder)
    content = torch.randn(CHECK_VOCAB.items, 8) if hasattr(encoder_class, "load_content") else None
    config = ModelConfig(encoder=encoder, embedding_dim=8, behavior_dim=4, over_arch=[16])
    return LifelongCTRModel(config, CHECK_VOCAB, content_embeddings=content).eval()


def check_encoders(
    encoders: Sequence[str],
    out_dir: str | os.PathLike[str],
    aoti: Sequence[str] = (),
    requests: Sequence[tuple[Sequence[int], int]] = CHECK_REQUESTS,
    atol: float = 1e-5,
    show_progress: bool = True,
) -> list[dict[str, Any]]:
    """Export each encoder's small model under ``out_dir/<name>`` (AOTInductor for those in
    ``aoti``, ``torch.export`` otherwise), then score all of them in one fresh process.

    Returns one record per encoder: ``encoder, kind, export_s, compile_s, max_abs_diff, ok``
    and ``outputs``, the fresh process's ``[B, C]`` probabilities per request; when a package
    fails to load or run, each is retried in a process of its own and a failing one gets
    ``ok=False`` and the child's ``error`` instead.
    """
    out_dir = Path(out_dir)
    records, cases, expected = [], [], []
    for name in progress(list(encoders), desc="export", unit="encoder", disable=not show_progress):
        model = small_model(name)
        start = time.perf_counter()
        manifest = export_split(model, out_dir / name, aoti=name in aoti)
        elapsed = time.perf_counter() - start
        compile_s = manifest["dense"]["compile_seconds"]
        batch = [
            random_request(model, lengths, c, seed=100 + i)
            for i, (lengths, c) in enumerate(requests)
        ]
        cases.append((out_dir / name, batch))
        expected.append([eager_rank(model, request) for request in batch])
        records.append(
            {
                "encoder": name,
                "kind": manifest["dense"]["kind"],
                "export_s": round(elapsed - (compile_s or 0.0), 2),
                "compile_s": None if compile_s is None else round(compile_s, 2),
                "runtime_assertions": manifest["dense"]["runtime_assertions"],
            }
        )
    start = time.perf_counter()
    try:
        outputs: list[Any] = fresh_process_rank(cases)
    except ExportError:  # one package failing to run stops the shared process: one each
        outputs = []
        for case in cases:
            try:
                outputs.append(fresh_process_rank([case])[0])
            except ExportError as err:
                outputs.append(err)
    load_s = time.perf_counter() - start
    for record, got, want in zip(records, outputs, expected, strict=True):
        if isinstance(got, ExportError):
            record.update(ok=False, error=str(got)[-600:], fresh_process_s=round(load_s, 2))
            record["outputs"] = None
            continue
        diff = max(
            float((g - w).abs().max()) if w.numel() else 0.0 for g, w in zip(got, want, strict=True)
        )
        shapes_ok = all(g.shape == w.shape for g, w in zip(got, want, strict=True))
        record.update(
            max_abs_diff=diff,
            ok=shapes_ok and diff <= atol,
            fresh_process_s=round(load_s, 2),
            outputs=got,
        )
    return records


def main_check_all(aoti: str, report: str | None) -> int:
    """The ``--check-all`` command: every registered encoder; ``aoti`` = "all", "none" or a
    comma-separated list of encoders compiled with AOTInductor (the others: torch.export)."""
    names = sorted(ENCODERS)
    chosen = names if aoti == "all" else [] if aoti == "none" else aoti.split(",")
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        print(f"export error: --aoti names unknown encoders {unknown}; choose from {names}")
        return 1
    with tempfile.TemporaryDirectory() as work:
        try:
            records = check_encoders(names, work, aoti=chosen)
        except ExportError as err:
            print(f"export error: {err}")
            return 1
    for r in records:
        r.pop("outputs")
        print(json.dumps(r, sort_keys=True))
    if report:
        path = Path(report)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "device": "cpu",
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "results": records,
        }
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True))
        os.replace(tmp, path)
    failed = [r["encoder"] for r in records if not r["ok"]]
    if failed:
        print(f"export check failed for {failed}")
        return 1
    return 0
