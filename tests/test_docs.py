"""The docs hold: every ``python -m`` command they name answers ``--help``, every relative
link resolves (files and ``#anchors``), and the README stays a front door (<= 250 lines)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
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


#: runs ``python -m MODULE --help`` for each argument, in one process (the imports of torch and
#: torchrec are paid once, not once per command), and prints ``MODULE<TAB>EXIT<TAB>usage-seen``
HELP_DRIVER = r"""
import contextlib, io, runpy, sys
for module in sys.argv[1:]:
    out = io.StringIO()
    code = 0
    sys.argv = [module, "--help"]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    except BaseException as err:
        code = f"raised {type(err).__name__}: {err}"
    else:
        code = "returned without exiting"
    print(f"{module}\t{code}\t{'usage' in out.getvalue().lower()}", flush=True)
"""


OWN = ("pipelines", "benchmarks", "components")


def test_every_named_outside_command_is_installed() -> None:
    """``python -m pytest`` and the like: the module exists (its --help is not ours to test)."""
    import importlib.util

    outside = [m for m in named_modules() if m.split(".")[0] not in OWN]
    assert [m for m in outside if importlib.util.find_spec(m) is None] == []


@pytest.mark.slow
def test_every_named_command_answers_help() -> None:
    modules = sorted(m for m in named_modules() if m.split(".")[0] in OWN)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", HELP_DRIVER, *modules],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    answers = {}
    for line in proc.stdout.splitlines():
        if line.count("\t") == 2:
            module, code, usage = line.split("\t")
            answers[module] = (code, usage)
    assert sorted(answers) == modules, proc.stderr[-2000:]
    failed = {m: a for m, a in answers.items() if a != ("0", "True")}
    assert failed == {}


def test_the_help_driver_reports_a_failing_command(tmp_path: Path) -> None:
    (tmp_path / "broken_cli.py").write_text("raise SystemExit(3)\n")
    (tmp_path / "good_cli.py").write_text(
        "import argparse\nargparse.ArgumentParser().parse_args()\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", HELP_DRIVER, "broken_cli", "good_cli"],
        capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )  # fmt: skip
    assert proc.stdout.splitlines() == ["broken_cli\t3\tFalse", "good_cli\t0\tTrue"]


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
