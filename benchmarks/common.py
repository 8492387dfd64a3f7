"""Helpers shared by the quality, cost and report benchmarks.

* results JSON files are updated under an advisory file lock and written atomically (temp file,
  then rename), so a killed benchmark never leaves a half-written file and two benchmark
  processes working on different pieces of the same file do not lose each other's records;
* :func:`environment` records where a number was measured (machine, versions, commit, date);
* :func:`run_logged` runs a child interpreter with its output in a log file.

This module imports neither torch nor torchrec: the parent processes of the benchmarks stay
light, and versions are read from the installed distributions' metadata.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from pipelines.train.memory import peak_rss_mib as _peak_rss_mib
from pipelines.train.provenance import git_state, utc_now

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, in MiB (VmHWM: not the parent's)."""
    return round(_peak_rss_mib(), 1)


def time_runs(step: Callable[[], Any], repeats: int) -> tuple[float, list[float], Any]:
    """``(median ms, every run's ms, last result)`` of ``step`` over ``repeats`` runs after one
    warm-up run."""
    result = step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = step()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), times, result


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def environment() -> dict[str, Any]:
    """Machine, software versions, commit and date of a measurement."""
    return {
        "machine": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": _version("torch"),
        "torchrec": _version("torchrec"),
        "fbgemm_gpu": _version("fbgemm-gpu-cpu") or _version("fbgemm-gpu"),
        **git_state(),
        "date": utc_now(),
    }


def read_json(path: Path, default: Any = None) -> Any:
    """The parsed file, or ``default`` when it does not exist."""
    return json.loads(path.read_text()) if path.is_file() else default


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON via a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n")
    tmp.replace(path)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` via a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock on ``path`` + ``.lock`` for the duration of the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def update_json(path: Path, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Locked read-modify-write of a JSON object file; returns the new content."""
    with file_lock(path):
        data = read_json(path, {})
        change(data)
        write_json_atomic(path, data)
    return data


def finite_or_none(value: Any) -> float | None:
    """``float(value)`` when finite, else None (JSON has no NaN)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def mean_std(values: Sequence[float]) -> dict[str, float | None]:
    """``{"mean", "std"}`` (sample std, ddof=1; None for fewer than two values)."""
    clean = [float(v) for v in values if finite_or_none(v) is not None]
    if not clean:
        return {"mean": None, "std": None}
    mean = sum(clean) / len(clean)
    if len(clean) < 2:
        return {"mean": mean, "std": None}
    variance = sum((v - mean) ** 2 for v in clean) / (len(clean) - 1)
    return {"mean": mean, "std": math.sqrt(variance)}


def child_env() -> dict[str, str]:
    """Environment of child interpreters: the repository on PYTHONPATH."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def run_logged(
    args: Sequence[str], log_path: Path, timeout: float | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python args...`` from the repository root, stdout + stderr appended to ``log_path``.

    Raises ``subprocess.TimeoutExpired`` (after killing the child) when ``timeout`` seconds pass.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a") as log:
        log.write(f"\n=== {utc_now()} {' '.join(args)}\n")
        log.flush()
        return subprocess.run(
            [sys.executable, *args],
            cwd=REPO_ROOT,
            env=child_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
        )


def tail(path: Path, chars: int = 3000) -> str:
    """The last ``chars`` characters of a text file ('' when absent)."""
    return path.read_text(errors="replace")[-chars:] if path.is_file() else ""


def fmt(value: Any, digits: int = 4) -> str:
    """A number for a markdown table ('-' for None)."""
    if value is None:
        return "-"
    if isinstance(value, int | float):
        return f"{value:.{digits}f}"
    return str(value)


def fmt_mean_std(stat: dict[str, float | None] | None, digits: int = 4) -> str:
    """``mean ± std`` (or just the mean when there is no std)."""
    if not stat or stat.get("mean") is None:
        return "-"
    if stat.get("std") is None:
        return fmt(stat["mean"], digits)
    return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
