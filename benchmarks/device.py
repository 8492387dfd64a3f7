"""Running the encoders on a device (CPU or CUDA) in a given precision, with plain torch only.

Shared by ``benchmarks.encoders`` (``--device`` / ``--dtype``) and the parity tests
(``tests/gpu/test_cuda_parity.py``). Nothing here imports torchrec, fbgemm, yaml or tqdm: the
GPU image these run on has none of them (docs/gpu.md).

Precisions (``PRECISIONS``):

- ``fp32``: parameters, embeddings and arithmetic in float32.
- ``bf16``: mixed precision, as one trains: parameters and inputs stay float32 and
  ``torch.autocast(device, bfloat16)`` runs matmuls/linear layers in bfloat16.
- ``bf16-module``: the module and the embeddings cast to bfloat16 (``module.to(bfloat16)``),
  as one serves; ages and numeric fields stay float32, ids int64.
"""

from __future__ import annotations

import contextlib
import dataclasses
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch

from components.encoders.base import History, Query

PRECISIONS = ("fp32", "bf16", "bf16-module")

#: History / Query fields that hold embeddings (cast by ``bf16-module``; the others keep dtype)
EMBEDDING_FIELDS = ("embeddings", "behavior_embeddings")


def resolve_device(name: str) -> torch.device:
    """``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``"auto"`` (CUDA when available)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} asked for, but torch.cuda.is_available() is False")
    return device


def embedding_dtype(precision: str) -> torch.dtype:
    """dtype of the module and the embeddings under ``precision``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return torch.bfloat16 if precision == "bf16-module" else torch.float32


@contextlib.contextmanager
def precision_context(device: torch.device, precision: str) -> Iterator[None]:
    """autocast to bfloat16 for ``bf16``; nothing for the other precisions."""
    embedding_dtype(precision)  # validates
    if precision == "bf16":
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            yield
    else:
        yield


def move_inputs(
    query: Query,
    history: History,
    device: torch.device | str,
    precision: str = "fp32",
    requires_grad: bool = True,
) -> tuple[Query, History]:
    """Copies of ``query`` / ``history`` on ``device``; embeddings in the precision's dtype and,
    with ``requires_grad``, new leaves that record gradients (ids, ages, numeric keep dtype)."""
    dtype = embedding_dtype(precision)

    def move(obj: Any) -> Any:
        fields = {}
        for field in dataclasses.fields(obj):
            value = getattr(obj, field.name)
            if isinstance(value, torch.Tensor):
                value = value.detach().to(device)
                if field.name in EMBEDDING_FIELDS:
                    value = value.to(dtype)
                    if field.name == "embeddings" and requires_grad:
                        value.requires_grad_()
            fields[field.name] = value
        return type(obj)(**fields)

    return move(query), move(history)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); nothing on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_on_device(
    step: Callable[[], Any], repeats: int, device: torch.device, warmup: int = 1
) -> tuple[float, list[float]]:
    """``(median ms, every run's ms)`` of ``step`` after ``warmup`` runs, with the device
    synchronized before and after each timed run (CUDA kernels run asynchronously)."""
    for _ in range(warmup):
        step()
    synchronize(device)
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        step()
        synchronize(device)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), times


def device_info(device: torch.device) -> dict[str, Any]:
    """torch / CUDA / GPU facts of ``device`` for a results file."""
    info: dict[str, Any] = {"device": str(device), "torch": torch.__version__}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            cuda=torch.version.cuda,
            gpu=props.name,
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            capability=f"{props.major}.{props.minor}",
            bf16_supported=torch.cuda.is_bf16_supported(),
        )
    else:
        info["threads"] = torch.get_num_threads()
    return info
