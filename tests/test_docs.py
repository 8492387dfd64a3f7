"""The docs hold: every ``python -m`` command they name answers ``--help``, every relative
link resolves (files and ``#anchors``), and the README stays a front door (<= 250 lines)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: ``python -m a.b`` / ``torchrun ... -m a.b``; a name followed by ``.<`` (``pipelines.<job>``) is a
#: placeholder, not a command
MODULE = re.compile(r"(?:python3?|torchrun[^`\n]*?)\s+-m\s+([A-Za-z_][\w.]*\w)(?![\w.<])")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def named_modules() -> dict[str, list[str]]:
    """``module -> pages naming it`` for every ``python -m MODULE`` in README.md and docs/."""
    found: dict[str, list[str]] = {}
    for page in PAGES:
        for module in MODULE.findall(page.read_text()):
            found.setdefault(module, []).append(page.name)
    return found


def test_the_docs_name_the_main_commands() -> None:
    modules = named_modules()
    for module in ("pipelines.prepare", "pipelines.train", "pipelines.export", "pipelines.score"):
        assert module in modules


def _help(module: str) -> tuple[str, int, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", module, "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    return module, proc.returncode, proc.stdout + proc.stderr


@pytest.mark.slow
def test_every_named_command_answers_help() -> None:
    modules = sorted(named_modules())
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(_help, modules))
    failed = [f"{m} (exit {code}): {out[-400:]}" for m, code, out in results if code != 0]
    assert failed == []
    no_usage = [m for m, _, out in results if "usage" not in out.lower()]
    assert no_usage == []


def slug(heading: str) -> str:
    """GitHub's anchor of a markdown heading: lower case, punctuation dropped, spaces -> '-'."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return {slug(m) for m in re.findall(r"^#+\s+(.*)$", text, flags=re.M)}


def relative_links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return [
        link
        for link in LINK.findall(text)
        if not re.match(r"^[a-z][a-z0-9+.-]*:", link)  # http:, https:, mailto:
    ]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for link in relative_links(page):
        target, _, anchor = link.partition("#")
        path = (page.parent / target).resolve() if target else page
        if not path.exists():
            broken.append(f"{link}: no {path}")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(f"{link}: no heading #{anchor} in {path.name}")
    assert broken == []


def test_the_link_checker_sees_a_broken_link(tmp_path: Path) -> None:
    page = tmp_path / "p.md"
    page.write_text("# Title here\n[a](missing.md) [b](#title-here) [c](https://x.org)\n")
    assert relative_links(page) == ["missing.md", "#title-here"]
    assert anchors(page) == {"title-here"}


def test_the_readme_is_a_front_door() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 250
    first_screen = "\n".join(lines[:15])
    assert "bash scripts/main.sh" in first_screen and "bash scripts/test.sh" in first_screen


def test_every_docs_page_is_linked_from_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    for page in (ROOT / "docs").glob("*.md"):
        assert f"(docs/{page.name})" in readme, page.name
