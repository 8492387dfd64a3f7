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
    """Whether ``model``'s test AUC rises from length ``start`` to ``end``: the per-seed
    differences (at each point's chosen rate) over the seeds both points ran, their mean
    (``gain``) and std (None for one seed). ``rises``: the mean gain is positive and larger than
    its std. None when either point lacks the model or no seed is common."""
    from benchmarks.common import mean_std
    from benchmarks.quality.report import _test_auc_by_seed

    if start not in points or end not in points:
        return None
    first, last = _rows(points[start]).get(model), _rows(points[end]).get(model)
    if first is None or last is None:
        return None
    a = _test_auc_by_seed(first, points[start].get("runs", {}))
    b = _test_auc_by_seed(last, points[end].get("runs", {}))
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return None
    diff = mean_std([b[s] - a[s] for s in seeds])
    return {
        "model": model,
        "start": start,
        "end": end,
        "seeds": seeds,
        "auc_start": sum(a[s] for s in seeds) / len(seeds),
        "auc_end": sum(b[s] for s in seeds) / len(seeds),
        "gain": diff["mean"],
        "std": diff["std"],
        "rises": diff["mean"] > 0 and (diff["std"] is None or diff["mean"] > diff["std"]),
    }


def render_length_table(
    name: str, points: dict[int, dict[str, Any]], swept_only: bool = False
) -> str:
    """A markdown block: one row per model, one column per history length, cells
    ``test AUC [± std] / test GAUC``, then the floor and the rise of DMGIN from 200 to 10,000.
    ``swept_only``: only the models run at more than one length."""
    rows_by_length = {length: _rows(data) for length, data in points.items()}
    models: list[str] = []
    for rows in rows_by_length.values():
        models += [m for m in rows if m not in models]
    if swept_only:  # the README's short form: models run at more than one length
        models = [m for m in models if sum(m in rows for rows in rows_by_length.values()) > 1]
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
    for model in ("DMGIN", "DMGIN+item"):  # with and without the candidate item's statistics
        rise = rises_with_length(points, model, 200, 10_000)
        if rise is None:
            continue
        spread = f" ± {rise['std']:.4f}" if rise["std"] is not None else ", one seed"
        lines += [
            "",
            f"{model} test AUC from L=200 to L=10,000, paired by seed over seeds "
            f"{rise['seeds']}: {rise['auc_start']:.4f} -> {rise['auc_end']:.4f} "
            f"({rise['gain']:+.4f}{spread}; target: rises by more than its std: "
            f"{'met' if rise['rises'] else 'missed'}).",
        ]
    return "\n".join(lines)
