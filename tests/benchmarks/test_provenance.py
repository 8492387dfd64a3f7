"""git_state: the commit and whether the measured code differs from it (results files excluded)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from pipelines.train.provenance import git_state

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs the git binary")


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=root, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout.strip()


def test_results_files_do_not_make_the_code_dirty_but_code_does(tmp_path: Path) -> None:
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "benchmarks" / "results" / "quality.json").write_text("{}\n")
    (tmp_path / "model.py").write_text("x = 1\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-qm", "init")
    head = _git(tmp_path, "rev-parse", "HEAD")
    assert git_state(tmp_path) == {"commit": head, "dirty": False}

    (tmp_path / "benchmarks" / "results" / "quality.json").write_text('{"runs": {}}\n')
    (tmp_path / "notes.txt").write_text("untracked\n")
    assert git_state(tmp_path) == {"commit": head, "dirty": False}

    (tmp_path / "model.py").write_text("x = 2\n")
    assert git_state(tmp_path) == {"commit": head, "dirty": True}


def test_outside_a_repository_both_are_unknown(tmp_path: Path) -> None:
    assert git_state(tmp_path) == {"commit": None, "dirty": None}
