"""``python -m benchmarks.report``: renders docs/results.md and the README summary from the JSON."""

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
    doc = tmp_path / "docs" / "results.md"
    doc.parent.mkdir()
    doc.write_text(f"# title\n\nintro\n\n{report.BEGIN}\nold text\n{report.END}\n\n## Tests\n")
    readme = tmp_path / "README.md"
    summary = f"{report.SUMMARY_BEGIN}\nold summary\n{report.SUMMARY_END}"
    readme.write_text(f"# front\n\n## Results\n\n{summary}\n\n## Tests\n")
    args = ["--results", str(results), "--readme", str(readme), "--doc", str(doc)]
    assert report.main([*args, "--check"]) == 1  # stale: holds "old text"
    assert report.main(args) == 0
    text = doc.read_text()
    assert "old text" not in text and text.startswith("# title\n\nintro\n\n")
    assert text.endswith(f"{report.END}\n\n## Tests\n")
    data = read_json(results / "data.json")
    assert f"{data['prepare']['events']:,} events" in text
    for dataset in read_json(results / "content.json")["datasets"]:
        assert dataset["dataset"] in text
    assert "No quality benchmark results yet" in text
    front = readme.read_text()
    assert "old summary" not in front and "(docs/results.md)" in front
    assert front.startswith("# front\n\n## Results\n\n") and front.endswith("\n\n## Tests\n")
    assert report.main([*args, "--check"]) == 0  # fresh now
    readme.write_text(front.replace("docs/results.md", "elsewhere.md"))
    assert report.main([*args, "--check"]) == 1  # a stale summary alone is found too
    assert not list(tmp_path.rglob("*.tmp"))


def test_images_are_linked_relative_to_the_page(tmp_path: Path) -> None:
    png = RESULTS_DIR / "cost.png"
    assert report.image(png, "cost", RESULTS_DIR.parents[1] / "docs") == (
        "![cost](../benchmarks/results/cost.png)"
    )


def test_missing_markers_is_a_clear_error(results: Path, tmp_path: Path) -> None:
    doc = tmp_path / "results.md"
    doc.write_text("# no markers here\n")
    with pytest.raises(SystemExit, match="markers"):
        report.main(["--results", str(results), "--doc", str(doc)])
    assert doc.read_text() == "# no markers here\n"


def test_the_repository_readme_is_up_to_date() -> None:
    """The committed README summary and docs/results.md show what the committed results render."""
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


def test_the_readme_summary_shows_each_models_quality_means(tmp_path: Path) -> None:
    from benchmarks.common import fmt
    from benchmarks.quality.report import summarize
    from benchmarks.summary import quality_summary

    name = "quality_ml-1m-u2999.json"
    if not (RESULTS_DIR / name).is_file():
        pytest.skip(f"benchmarks/results/{name} is not committed")
    shutil.copy(RESULTS_DIR / name, tmp_path / name)
    text = quality_summary(tmp_path)
    assert text is not None
    rows = [r for r in summarize(read_json(tmp_path / name)) if r["lr"] is not None]
    assert rows
    for row in rows:
        auc, gauc = fmt(row["test_auc"]["mean"]), fmt(row["test_gauc"]["mean"])
        assert f"| {row['model']} | {auc} | {gauc} |" in text
    floor = read_json(tmp_path / name)["floor"]["test"]
    assert f"| floor (no model) | {fmt(floor['auc'])} | {fmt(floor['gauc'])} |" in text
