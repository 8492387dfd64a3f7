"""``python -m benchmarks.mutants`` covers every source file in its scope.

Its default run mutates every file of ``components/ops``, ``components/layers``,
``components/encoders`` and ``components/head.py``; a file without a test selection would be
refused (or, worse, left out of "the full run"), so a new module must name its tests here.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.mutants import TESTS

ROOT = Path(__file__).resolve().parents[2]
SCOPE = ("components/ops", "components/layers", "components/encoders")


def test_every_file_in_scope_has_existing_tests() -> None:
    files = [
        str(p.relative_to(ROOT))
        for folder in SCOPE
        for p in sorted((ROOT / folder).glob("*.py"))
        if p.name != "__init__.py"
    ] + ["components/head.py"]
    assert [f for f in files if f not in TESTS] == []
    assert [f for f in TESTS if f not in files] == []  # no stale entries
    assert [t for tests in TESTS.values() for t in tests if not (ROOT / t).is_file()] == []
