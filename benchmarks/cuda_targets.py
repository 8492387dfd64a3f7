"""The GPU targets of issue #22, from the CPU and the CUDA encoder results.

- DMGIN's forward + backward at L=10,000 at most 1.3x SIMHard's on the GPU;
- every encoder at least 20x faster on the GPU than on the CPU at L=10,000.

Inputs: ``benchmarks/results/encoders.json`` (``python -m benchmarks.encoders``, CPU float32) and
``benchmarks/results/encoders_cuda.json`` (``--device cuda``, docs/gpu.md). Each precision of the
CUDA file is compared with the CPU's float32. A model missing from either file (not run, or
skipped for time or memory) gets None, never a guess.

Usage::

    python -m benchmarks.cuda_targets [--cpu PATH] [--cuda PATH] [--length 10000]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
TARGETS = {"dmgin_over_simhard_gpu_max": 1.3, "speedup_vs_cpu_min": 20.0}


def step_ms(results: dict[str, Any], length: int, precision: str | None) -> dict[str, float]:
    """model -> forward+backward ms at ``length`` (rows of ``precision``; CPU rows have none)."""
    return {
        row["model"]: float(row["fwd_bwd_ms"])
        for row in results["results"]
        if row["length"] == length and row.get("precision", "fp32") == (precision or "fp32")
    }


def cuda_targets(cpu: dict[str, Any], cuda: dict[str, Any], length: int = 10_000) -> dict[str, Any]:
    """Per CUDA precision: DMGIN / SIMHard on the GPU, each model's CPU / GPU speedup, and
    whether each target is met (None where a number is missing)."""
    cpu_ms = step_ms(cpu, length, None)
    precisions = cuda.get("settings", {}).get("precisions") or sorted(
        {row.get("precision", "fp32") for row in cuda["results"]}
    )
    out: dict[str, Any] = {"length": length, "targets": TARGETS, "precisions": {}}
    for precision in precisions:
        gpu_ms = step_ms(cuda, length, precision)
        ratio = None
        if "DMGIN" in gpu_ms and "SIMHard" in gpu_ms:
            ratio = round(gpu_ms["DMGIN"] / gpu_ms["SIMHard"], 3)
        speedup = {
            model: round(cpu_ms[model] / gpu_ms[model], 1) if model in gpu_ms else None
            for model in cpu_ms
        }
        known = [s for s in speedup.values() if s is not None]
        every = None
        if speedup and known:
            below = [s for s in known if s < TARGETS["speedup_vs_cpu_min"]]
            every = False if below else (True if len(known) == len(speedup) else None)
        out["precisions"][precision] = {
            "gpu_ms": gpu_ms,
            "dmgin_over_simhard": ratio,
            "speedup_vs_cpu": speedup,
            "met": {
                "dmgin_over_simhard": None
                if ratio is None
                else ratio <= TARGETS["dmgin_over_simhard_gpu_max"],
                "every_encoder_20x": every,
            },
        }
    return out


def render(report: dict[str, Any]) -> str:
    lines = [f"GPU targets at L={report['length']:,} (CPU float32 vs each CUDA precision):"]
    for precision, part in report["precisions"].items():
        lines.append(
            f"[{precision}] DMGIN / SIMHard on the GPU = {part['dmgin_over_simhard']} "
            f"(target <= {TARGETS['dmgin_over_simhard_gpu_max']}): "
            f"met={part['met']['dmgin_over_simhard']}"
        )
        for model, speedup in part["speedup_vs_cpu"].items():
            lines.append(f"  {model}: CPU/GPU = {'-' if speedup is None else f'{speedup}x'}")
        lines.append(
            f"  every encoder >= {TARGETS['speedup_vs_cpu_min']}x: "
            f"met={part['met']['every_encoder_20x']}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu", type=Path, default=RESULTS / "encoders.json")
    parser.add_argument("--cuda", type=Path, default=RESULTS / "encoders_cuda.json")
    parser.add_argument("--length", type=int, default=10_000)
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    args = parser.parse_args(argv)
    report = cuda_targets(
        json.loads(args.cpu.read_text()), json.loads(args.cuda.read_text()), args.length
    )
    print(json.dumps(report, indent=2, sort_keys=True) if args.json else render(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
