"""``components.ops``, ``.layers``, ``.encoders`` (and ``benchmarks.encoders``' device path) run
on plain torch: with ``torchrec`` and ``fbgemm_gpu`` made unimportable, every encoder runs
forward + backward. This is what the GPU image has (torch only; docs/gpu.md), and
DESIGN.md's layering rule: torchrec/fbgemm only in ``components/model.py`` and optional fast
paths."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from components.encoders.registry import ENCODERS as REGISTERED

REPO_ROOT = Path(__file__).resolve().parents[1]

BLOCK = textwrap.dedent(
    """
    import importlib.abc
    import sys

    BLOCKED = ("torchrec", "fbgemm_gpu")

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{name} is blocked: this path must run on plain torch")
            return None

    sys.meta_path.insert(0, Block())
    """
)

ENCODERS = textwrap.dedent(
    """
    import torch

    import components
    import components.encoders
    import components.layers
    import components.ops
    from components.encoders.base import EncoderSpec
    from components.encoders.ciubm import CiUBM
    from components.encoders.example_inputs import random_history, random_query
    from components.encoders.registry import ENCODERS, build_encoder
    from components.ops import jagged

    # every module under components.ops / .layers / .encoders imports
    import pkgutil, importlib
    for package in (components.ops, components.layers, components.encoders):
        for info in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{package.__name__}.{info.name}")

    assert not jagged._HAS_FBGEMM
    spec = EncoderSpec(embedding_dim=16, behavior_dim=4, num_behaviors=3, num_numeric=2,
                       num_groups=7)
    for name in ENCODERS:
        torch.manual_seed(0)
        if name == "CiUBM":
            encoder = CiUBM(spec, content_embeddings=torch.randn(1000, 8))
        else:
            encoder = build_encoder(name, spec)
        history = random_history(spec, [0, 5, 300, 40], requires_grad=True)
        query = random_query(spec, 4, requires_grad=True)
        out, aux = encoder.forward_with_aux(query, history)
        loss = out.sum() + sum(logits.sum() for logits in aux.values())
        loss.backward()
        assert out.shape == (4, encoder.output_dim) and torch.isfinite(out).all(), name
        assert history.embeddings.grad is not None, name
        # SDIM's candidate only picks hash buckets: no gradient reaches it through the encoder
        assert (query.embeddings.grad is None) == (name == "SDIM"), name
        ranked = encoder.forward_candidates(random_query(spec, 4, candidates=3), history)
        assert ranked.shape == (4, 3, encoder.output_dim), name
    print("ran", len(ENCODERS), "encoders")
    try:
        components.LifelongCTRModel
    except ImportError:
        print("LifelongCTRModel needs torchrec: lazy, as it should be")
    else:
        raise AssertionError("components.LifelongCTRModel imported without torchrec")
    assert not any(m.split(".")[0] in ("torchrec", "fbgemm_gpu") for m in sys.modules)
    """
)

BENCHMARK = textwrap.dedent(
    """
    import json, sys, tempfile
    from pathlib import Path

    from benchmarks import encoders

    out = Path(tempfile.mkdtemp()) / "enc.json"
    code = encoders.main(["--smoke", "--device", "cpu", "--dtype", "fp32,bf16",
                          "--models", "SIMHard,DMGIN,CiUBM", "--output", str(out)])
    assert code == 0
    results = json.loads(out.read_text())
    assert results["settings"]["recipes"] == "encoder_recipes.json"
    assert len(results["results"]) == 12, results["results"]
    assert not any(m.split(".")[0] in ("torchrec", "fbgemm_gpu") for m in sys.modules)
    print("benchmark ok")
    """
)


def run_blocked(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCK + code],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS="1"),
    )


def test_blocker_blocks() -> None:
    result = run_blocked("import torchrec")
    assert result.returncode != 0 and "torchrec is blocked" in result.stderr


def test_encoders_run_without_torchrec_or_fbgemm() -> None:
    result = run_blocked(ENCODERS)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"ran {len(REGISTERED)} encoders" in result.stdout


def test_encoder_benchmark_device_path_runs_without_torchrec() -> None:
    result = run_blocked(BENCHMARK)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "benchmark ok" in result.stdout
