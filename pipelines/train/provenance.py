"""Where a run happened: UTC time and the repository's commit (recorded with results).

Imports nothing heavy, so light parent processes (the benchmarks' drivers) can use it too.
"""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]


def utc_now() -> str:
    """Current UTC time, ISO 8601 to the second."""
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


#: written by the benchmarks themselves while they run: not a change to the measured code
NOT_CODE = ("benchmarks/results",)


def git_state(root: Path = REPO_ROOT) -> dict[str, Any]:
    """``{"commit": sha or None, "dirty": bool or None}`` of the repository at ``root``.

    Dirty means a tracked file differs from the commit, except the results files under
    :data:`NOT_CODE` (a benchmark rewrites them as it goes, so they are always modified while
    it measures).
    """
    excluded = [f":(exclude){path}" for path in NOT_CODE]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *excluded],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": bool(status)}
