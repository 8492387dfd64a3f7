"""Render the results from ``benchmarks/results/*.json``: docs/results.md and the README summary.

Usage::

    python -m benchmarks.report            # rewrite both, between their markers
    python -m benchmarks.report --check    # exit 1 if either is not what the JSON renders
    python -m benchmarks.report --print    # print the docs/results.md section only

docs/results.md holds every table between the results markers; README.md holds a short summary
(:mod:`benchmarks.summary`) between the summary markers.

Each block names the command that produced it and where it was measured (machine, date,
commit). The main job's summary (``runs/main/summary.json``) is copied into
``benchmarks/results/main_job.json`` when it is newer, so the committed results are complete.
"""

from __future__ import annotations

import argparse
import difflib
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.common import REPO_ROOT, RESULTS_DIR, fmt, markdown_table, read_json
from benchmarks.summary import render_summary
from pipelines.console import parse_cli

README = REPO_ROOT / "README.md"
DOC = REPO_ROOT / "docs" / "results.md"
BEGIN = "<!-- results:begin (python -m benchmarks.report) -->"
END = "<!-- results:end -->"
SUMMARY_BEGIN = "<!-- summary:begin (python -m benchmarks.report) -->"
SUMMARY_END = "<!-- summary:end -->"
MAIN_SUMMARY = REPO_ROOT / "runs" / "main" / "summary.json"

PAPERS = (
    "No paper's protocol matches these datasets (papers.md section 11: SIM and ETA report plain "
    "AUC on Taobao/Amazon Books, DIN user-weighted AUC on MovieLens-20M with a user split, and "
    "DMGIN's table was not retrievable), so no paper number is put beside ours as if comparable. "
    "For scale only: DIN reports 0.7348 on MovieLens-20M (rating >= 4, user split, "
    "impression-weighted per-user AUC)."
)


def where(env: dict[str, Any] | None) -> str:
    """``measured on <machine>, <cpus> CPUs, <date>, commit <sha>``."""
    if not env:
        return ""
    commit = (env.get("commit") or "?")[:10] + (" (dirty)" if env.get("dirty") else "")
    return f"_Measured on {env.get('machine')}, {env.get('cpus')} CPUs, {env.get('date')}, commit {commit}._"


def main_job_section(results: Path) -> str | None:
    summary = read_json(results / "main_job.json")
    if not summary:
        return None
    rows = [
        [r["model"], fmt(r.get("auc")), fmt(r.get("gauc")), fmt(r.get("logloss")),
         "-" if r.get("train_seconds") is None else f"{r['train_seconds']:.0f}"]
        for r in summary["rows"]
    ]  # fmt: skip
    lines = [
        f"### Main job (`bash scripts/main.sh`), test split of {summary['dataset']}",
        markdown_table(["model", "AUC", "GAUC", "logloss", "train s"], rows),
    ]
    if summary.get("environment"):
        lines.append(where(summary["environment"]))
    return "\n\n".join(lines)


def image(path: Path, name: str, base: Path) -> str:
    """A markdown image of ``path`` linked relative to the folder of the page (``base``)."""
    return f"![{name}]({Path(os.path.relpath(path, base)).as_posix()})"


def quality_sections(results: Path, base: Path = DOC.parent) -> list[str]:
    paths = sorted(results.glob("quality_*.json"))
    if not paths:
        return []
    from benchmarks.quality.length import length_sweeps, render_length_table
    from benchmarks.quality.report import render_quality_markdown

    loaded = [d for d in (read_json(p) for p in paths) if d and not d.get("smoke")]
    sections = [render_length_table(name, points) for name, points in length_sweeps(loaded).items()]
    for path in paths:
        data = read_json(path)
        if data and data.get("smoke"):
            continue
        sections.append(render_quality_markdown(data))
        png = path.with_suffix(".png")
        if png.is_file():
            sections.append(image(png, path.stem, base))
    if sections:
        sections.append(PAPERS)
    return sections


def verdict(targets: dict[str, Any], key: str) -> str:
    """``met`` / ``missed`` / ``not measured`` for one checked target of a benchmark's JSON."""
    met = targets.get("met", {}).get(key)
    return "not measured" if met is None else ("met" if met else "missed")


def cost_section(results: Path, base: Path = DOC.parent) -> str | None:
    data = read_json(results / "cost.json")
    if not data or data["settings"].get("smoke"):
        return None
    from benchmarks.cost import render_markdown

    t = data["targets"]
    bound = t["targets"]  # the bounds the benchmark checked, recorded with its results
    lines = [
        "### Cost as L grows (`python -m benchmarks.cost`)",
        render_markdown(data),
        f"Targets at L={t['length']:,}: DMGIN step / SIMHard = {t['dmgin_step_over_simhard']} "
        f"(target <= {bound['dmgin_step_over_simhard_max']:g}: "
        f"{verdict(t, 'dmgin_step_over_simhard')}), DINFull step / DMGIN = "
        f"{t['dinfull_step_over_dmgin']} (>= {bound['dinfull_step_over_dmgin_min']:g}: "
        f"{verdict(t, 'dinfull_step_over_dmgin')}), DMGIN cached / full per candidate = "
        f"{t['dmgin_cached_over_full_per_candidate']} "
        f"(<= {bound['dmgin_cached_over_full_per_candidate_max']:g}: "
        f"{verdict(t, 'dmgin_cached_over_full_per_candidate')}), DMGIN encoder activations at "
        f"the largest L / at L={t['length']:,} = {t.get('dmgin_encoder_saved_growth')} "
        f"(<= {bound.get('dmgin_encoder_saved_growth_max', float('nan')):g}: "
        f"{verdict(t, 'dmgin_encoder_saved_growth')}).{_full_lookup_ratios(t)} Why any missed "
        "ones are missed: docs/benchmarks.md, *Reading the cost targets*.",
        image(results / "cost.png", "cost", base),
        where(data.get("environment")),
    ]
    return "\n\n".join(lines)


def _full_lookup_ratios(t: dict) -> str:
    """The two step ratios with every history row looked up, when the run measured them."""
    if t.get("full_lookup_dinfull_step_over_dmgin") is None:
        return ""
    return (
        " With every history row looked up (`train.lookup_plan=false`): DMGIN step / SIMHard = "
        f"{t['full_lookup_dmgin_step_over_simhard']}, DINFull step / DMGIN = "
        f"{t['full_lookup_dinfull_step_over_dmgin']}."
    )


def encoders_section(results: Path) -> str | None:
    data = read_json(results / "encoders.json")
    if not data or data["settings"].get("smoke"):
        return None
    from benchmarks.encoders import render_markdown

    t = data["targets"]
    bound = t["targets"]  # the bounds the benchmark checked, recorded with its results
    lines = [
        "### Encoders alone (`python -m benchmarks.encoders`)",
        render_markdown(data),
        f"Targets at L={t['length']:,}: DMGIN / SIMHard = {t['dmgin_over_simhard']} "
        f"(<= {bound['dmgin_over_simhard_max']:g}: {verdict(t, 'dmgin_over_simhard')}), "
        f"DINFull / DMGIN = {t['dinfull_over_dmgin']} "
        f"(>= {bound['dinfull_over_dmgin_min']:g}: {verdict(t, 'dinfull_over_dmgin')}), "
        f"group_behaviors vs pandas = {t['grouping_speedup_vs_pandas']}x "
        f"(>= {bound['grouping_speedup_vs_pandas_min']:g}x: "
        f"{verdict(t, 'grouping_speedup_vs_pandas')}), grouping share of a DMGIN step = "
        f"{t['grouping_share_of_dmgin_step']} (<= {bound['grouping_share_of_dmgin_step_max']:.2f}: "
        f"{verdict(t, 'grouping_share_of_dmgin_step')}).",
        where(data.get("environment")),
    ]
    return "\n\n".join(lines)


def data_section(results: Path) -> str | None:
    data = read_json(results / "data.json")
    if not data or data.get("mode") == "smoke":
        return None
    p = data["prepare"]
    rows = [
        [f"{r['history_length']:,}", f"{r['samples_per_s']:,.0f}", f"{r['peak_rss_mib']:,.0f}"]
        for r in data["loader"]
    ]
    return "\n\n".join(
        [
            "### Data layer (`python -m benchmarks.data`)",
            f"Prepare {p['dataset']}: {p['seconds']:.1f} s for {p['events']:,} events "
            f"(peak RSS {p['peak_rss_mib']:.0f} MiB).",
            markdown_table(["history length", "loader samples/s", "peak RSS MiB"], rows),
            f"_Measured on {data.get('machine')}._",
        ]
    )


def content_section(results: Path) -> str | None:
    data = read_json(results / "content.json")
    if not data:
        return None
    rows = []
    for ds in data["datasets"]:
        csft = ds["csft"]
        ks = ", ".join(
            f"K={c['k']}: {c['compression_ratio_of_medians']:.2f}" for c in ds["clusters"]
        )
        rows.append(
            [
                ds["dataset"],
                f"{ds['embed_seconds_cold']:.0f} / {ds['embed_seconds_cached']:.2f}",
                f"{csft['raw']['recall@10']:.4f} -> {csft['aligned']['recall@10']:.4f}",
                f"{csft['raw']['recall@50']:.4f} -> {csft['aligned']['recall@50']:.4f}",
                ks,
            ]
        )
    header = ["dataset", "embed s cold / cached", "recall@10 raw -> C-SFT",
              "recall@50 raw -> C-SFT", "median groups / median length"]  # fmt: skip
    return "\n\n".join(
        ["### Content (`python -m benchmarks.content`)", markdown_table(header, rows)]
    )


def render(results: Path = RESULTS_DIR, base: Path = DOC.parent) -> str:
    """The whole results section of docs/results.md (without the markers); images relative to
    ``base``."""
    blocks = ["## Results", "Rendered by `python -m benchmarks.report` from `benchmarks/results/`."]
    main = main_job_section(results)
    if main:
        blocks.append(main)
    quality = quality_sections(results, base)
    blocks += quality or ["_No quality benchmark results yet (`python -m benchmarks.quality`)._"]
    builders: list[Callable[[Path], str | None]] = [
        encoders_section,
        lambda r: cost_section(r, base),
        data_section,
        content_section,
    ]
    blocks += [block for build in builders if (block := build(results))]
    return "\n\n".join(blocks) + "\n"


def refresh_main_summary(results: Path) -> None:
    """Copy ``runs/main/summary.json`` into the results when it is newer."""
    target = results / "main_job.json"
    if MAIN_SUMMARY.is_file() and (
        not target.is_file() or MAIN_SUMMARY.stat().st_mtime > target.stat().st_mtime
    ):
        shutil.copyfile(MAIN_SUMMARY, target)


def replace_section(
    text: str, section: str, path: Path = DOC, begin: str = BEGIN, end: str = END
) -> str:
    """``text`` with what lies between ``begin`` and ``end`` replaced by ``section``."""
    if begin not in text or end not in text:
        raise SystemExit(f"{path}: markers {begin!r} / {end!r} are missing")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{begin}\n{section}{end}{tail}"


def _write_or_check(path: Path, current: str, updated: str, check: bool) -> int:
    if updated == current:
        return 0
    if check:
        diff = difflib.unified_diff(current.splitlines(), updated.splitlines(), lineterm="")
        print("\n".join(list(diff)[:60]), file=sys.stderr)
        print(f"{path} is stale: run python -m benchmarks.report", file=sys.stderr)
        return 1
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(updated)
    tmp.replace(path)
    print(f"updated the results in {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=RESULTS_DIR)
    parser.add_argument("--readme", type=Path, default=README, help="page with the summary")
    parser.add_argument("--doc", type=Path, default=DOC, help="page with every table")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="fail if either page is stale")
    mode.add_argument("--print", action="store_true", help="print the docs section only")
    args = parse_cli(parser, argv)
    args.results = args.results.resolve()  # image links are made relative to the pages
    if not args.check and args.results == RESULTS_DIR:
        refresh_main_summary(args.results)
    section = render(args.results, args.doc.resolve().parent)
    if args.print:
        print(section)
        return 0
    doc, readme = args.doc.read_text(), args.readme.read_text()
    new_doc = replace_section(doc, section, args.doc)
    summary = render_summary(args.results, main_job_section(args.results))
    new_readme = replace_section(readme, summary, args.readme, SUMMARY_BEGIN, SUMMARY_END)
    codes = [
        _write_or_check(args.doc, doc, new_doc, args.check),
        _write_or_check(args.readme, readme, new_readme, args.check),
    ]
    return max(codes)


if __name__ == "__main__":
    raise SystemExit(main())
