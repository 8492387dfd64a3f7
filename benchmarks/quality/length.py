"""Quality versus history length: the ``--max-len`` results files of one dataset side by side.

``python -m benchmarks.quality --dataset D --max-len L [--train-samples N]`` writes
``quality_D-L<L>[-n<N>].json``; the files that differ only in L form one *sweep*.
:func:`length_sweeps` finds them, :func:`render_length_table` puts every model's test AUC and
GAUC (mean over seeds at its chosen rate) in one row per model and one column per L, and
:func:`rises_with_length` says whether a model's test AUC grows from one length to another (the
issue's reading of "the lifelong history pays").
"""

from __future__ import annotations

import re
from typing import Any

from benchmarks.common import fmt, markdown_table

#: ``<dataset>-L<length><suffix>``: the suffix keeps sweeps of different subsamples apart
SWEEP_NAME = re.compile(r"^(?P<base>.+?)-L(?P<length>\d+)(?P<suffix>(?:-n\d+(?:-s\d+)?)?)$")


def sweep_key(dataset: str) -> tuple[str, int] | None:
    """``("<base><suffix>", L)`` of a ``--max-len`` results name, None for any other name."""
    match = SWEEP_NAME.match(dataset)
    if match is None:
        return None
    return match["base"] + match["suffix"], int(match["length"])


def length_sweeps(datasets: list[dict[str, Any]]) -> dict[str, dict[int, dict[str, Any]]]:
    """``{sweep: {L: results}}`` over the results dicts whose names carry ``-L<length>``."""
    sweeps: dict[str, dict[int, dict[str, Any]]] = {}
    for data in datasets:
        key = sweep_key(str(data.get("dataset", "")))
        if key is not None:
            sweeps.setdefault(key[0], {})[key[1]] = data
    return {name: dict(sorted(points.items())) for name, points in sorted(sweeps.items())}


def _rows(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    from benchmarks.quality.report import summarize

    return {r["model"]: r for r in summarize(data) if r["lr"] is not None}


def _cell(row: dict[str, Any] | None) -> str:
    if row is None:
        return "-"
    auc, gauc = row["test_auc"], row["test_gauc"]
    text = fmt(auc["mean"])
    if auc.get("std") is not None:
        text += f" ± {auc['std']:.4f}"
    return f"{text} / {fmt(gauc['mean'])}"


def rises_with_length(
    points: dict[int, dict[str, Any]], model: str, start: int, end: int
) -> dict[str, Any] | None:
    """Test AUC of ``model`` at lengths ``start`` and ``end`` and whether it is higher at
    ``end``; None when either point lacks the model."""
    if start not in points or end not in points:
        return None
    first, last = _rows(points[start]).get(model), _rows(points[end]).get(model)
    if first is None or last is None:
        return None
    a, b = first["test_auc"]["mean"], last["test_auc"]["mean"]
    stds = [x for x in (first["test_auc"]["std"], last["test_auc"]["std"]) if x is not None]
    return {
        "model": model,
        "start": start,
        "end": end,
        "auc_start": a,
        "auc_end": b,
        "gain": b - a,
        "std": max(stds) if stds else None,
        "rises": b > a,
    }


def render_length_table(name: str, points: dict[int, dict[str, Any]]) -> str:
    """A markdown block: one row per model, one column per history length, cells
    ``test AUC [± std] / test GAUC``, then the floor and the rise of DMGIN from 200 to 10,000."""
    rows_by_length = {length: _rows(data) for length, data in points.items()}
    models: list[str] = []
    for rows in rows_by_length.values():
        models += [m for m in rows if m not in models]
    header = ["model", *(f"L={length:,}" for length in points)]
    table = [[m, *(_cell(rows.get(m)) for rows in rows_by_length.values())] for m in models]
    floor = [(data.get("floor") or {}).get("test", {}) for data in points.values()]
    table.append(
        ["floor (no model)", *(f"{fmt(f.get('auc'))} / {fmt(f.get('gauc'))}" for f in floor)]
    )
    seeds = sorted({len(r["seeds"]) for rows in rows_by_length.values() for r in rows.values()})
    lines = [
        f"Quality versus history length on {name} (test AUC [± std over seeds] / test GAUC at "
        f"each model's chosen rate; seeds per cell: {'/'.join(map(str, seeds)) or '-'}; "
        f"`python -m benchmarks.quality --dataset ... --max-len L`, one results file per L):",
        "",
        markdown_table(header, table),
    ]
    rise = rises_with_length(points, "DMGIN", 200, 10_000)
    if rise is not None:
        spread = f", largest std {rise['std']:.4f}" if rise["std"] is not None else ", one seed"
        lines += [
            "",
            f"DMGIN test AUC from L=200 to L=10,000: {rise['auc_start']:.4f} -> "
            f"{rise['auc_end']:.4f} ({rise['gain']:+.4f}{spread}; target: rises: "
            f"{'met' if rise['rises'] else 'missed'}).",
        ]
    return "\n".join(lines)
