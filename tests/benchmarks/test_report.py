"""``python -m benchmarks.report``: renders the README Results section from the results JSON."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from benchmarks import report
from benchmarks.common import RESULTS_DIR, read_json


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """The committed data and content results (real measurements), copied."""
    folder = tmp_path / "results"
    folder.mkdir()
    for name in ("data.json", "content.json"):
        if not (RESULTS_DIR / name).is_file():
            pytest.skip(f"benchmarks/results/{name} is not committed")
        shutil.copy(RESULTS_DIR / name, folder / name)
    return folder


def test_render_update_and_check(results: Path, tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\nintro\n\n{report.BEGIN}\nold text\n{report.END}\n\n## Tests\n")
    args = ["--results", str(results), "--readme", str(readme)]
    assert report.main([*args, "--check"]) == 1  # stale: holds "old text"
    assert report.main(args) == 0
    text = readme.read_text()
    assert "old text" not in text and text.startswith("# title\n\nintro\n\n")
    assert text.endswith(f"{report.END}\n\n## Tests\n")
    data = read_json(results / "data.json")
    assert f"{data['prepare']['events']:,} events" in text
    for dataset in read_json(results / "content.json")["datasets"]:
        assert dataset["dataset"] in text
    assert "No quality benchmark results yet" in text
    assert report.main([*args, "--check"]) == 0  # fresh now
    assert not list(tmp_path.glob("*.tmp"))


def test_missing_markers_is_a_clear_error(results: Path, tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# no markers here\n")
    with pytest.raises(SystemExit, match="markers"):
        report.main(["--results", str(results), "--readme", str(readme)])
    assert readme.read_text() == "# no markers here\n"


def test_the_repository_readme_is_up_to_date() -> None:
    """The committed README shows what the committed results render."""
    assert report.main(["--check"]) == 0


def test_verdict_reads_the_recorded_met_flags() -> None:
    from benchmarks.report import verdict

    targets = {"met": {"a": True, "b": False, "c": None}}
    assert [verdict(targets, k) for k in ("a", "b", "c", "d")] == [
        "met",
        "missed",
        "not measured",
        "not measured",
    ]
