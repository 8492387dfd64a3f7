"""The tree shows the architecture: nothing imports upward (read from the import graph).

Every ``import`` / ``from ... import`` statement of every module is collected with ``ast``
(function-level imports included; docstring examples are strings and are not imports).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, root: Path = ROOT) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module_name(path, root).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def graph(top: str) -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in sorted((ROOT / top).rglob("*.py"))}


def offenders(top: str, forbidden: str) -> list[str]:
    return [
        f"{module} imports {name}"
        for module, names in graph(top).items()
        for name in sorted(names)
        if name == forbidden or name.startswith(forbidden + ".")
    ]


@pytest.mark.parametrize(
    ("top", "forbidden"),
    [("components", "pipelines"), ("components", "benchmarks"), ("pipelines", "benchmarks")],
)
def test_nothing_imports_upward(top: str, forbidden: str) -> None:
    assert offenders(top, forbidden) == []


#: the rank of each part; a module may import only parts of the same or a lower rank
COMPONENT_RANKS = {
    "components.ops": 0,
    "components.layers": 1,
    "components.encoders": 2,
    "components.model_config": 2,
    "components.head": 3,
    "components.model": 4,
    "components.tracing": 5,
    "components": 6,  # the package's own __init__ re-exports everything
}
PIPELINE_RANKS = {
    "pipelines.console": 0,
    "pipelines.data": 1,
    "pipelines.content": 2,
    "pipelines.train": 3,
    "pipelines.evaluate": 3,  # the trainer scores valid; evaluation uses the lookup plan
    "pipelines.serve": 4,
    "pipelines.prepare": 5,
    "pipelines.export": 5,
    "pipelines.score": 5,
    "pipelines.main_job": 5,
    "pipelines": 6,
}


def part(name: str, ranks: dict[str, int]) -> str | None:
    """The longest key of ``ranks`` that ``name`` lies in."""
    best = None
    for key in ranks:
        if (name == key or name.startswith(key + ".")) and (best is None or len(key) > len(best)):
            best = key
    return best


@pytest.mark.parametrize(
    ("top", "ranks"), [("components", COMPONENT_RANKS), ("pipelines", PIPELINE_RANKS)]
)
def test_layers_inside_a_package_only_import_downward(top: str, ranks: dict[str, int]) -> None:
    upward = []
    for module, names in graph(top).items():
        own = part(module, ranks)
        assert own is not None, f"{module} has no rank in this test: add its part"
        for name in names:
            other = part(name, ranks)
            if other is not None and ranks[other] > ranks[own]:
                upward.append(f"{module} ({own}) imports {name} ({other})")
    assert upward == []


def test_the_checker_sees_an_upward_import(tmp_path: Path) -> None:
    """The graph reader finds function-level and relative imports (so the tests above can fail)."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    source = "def f():\n    from pipelines.train import trainer\n    from . import sibling\n"
    (package / "mod.py").write_text(source)
    found = imports_of(package / "mod.py", tmp_path)
    assert {"pipelines.train.trainer", "pkg.sibling"} <= found


def test_at_most_six_modules_directly_in_pipelines() -> None:
    modules = sorted(p.name for p in (ROOT / "pipelines").glob("*.py"))
    assert len(modules) <= 6, modules
