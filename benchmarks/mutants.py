"""Mutation testing of ``components/`` with mutmut 3, one source file at a time.

mutmut is in the ``dev`` extra (``pip install -e '.[dev]'``).

``python -m benchmarks.mutants [FILE ...]`` mutates each FILE (default: every file of
``components/ops``, ``components/layers``, ``components/encoders`` and ``components/head.py``)
with mutmut, running for each only the test files that exercise it (``TESTS`` below), and writes
killed / survived / timed-out counts per file, with the survivors' names, to
``benchmarks/results/mutants.json`` (files already there and not run again are kept).

Every run happens in a scratch copy of the repository (``--workdir``, default a temporary
folder): mutmut's own ``mutants/`` tree, its trampolines and its config never touch the checkout.
Cost: mutmut runs the selected tests once per mutant; a small file (``components/ops/
group_index.py``: 37 mutants, 6.5 minutes on a shared core) takes minutes, the whole set hours.
Run one file at a time; read a survivor with ``mutmut show NAME`` inside the kept workdir
(``--keep``). mutmut 3 does not mutate decorated functions (the ``torch.fx.wrap`` /
``torch.no_grad`` ops). See ``docs/testing.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "mutants.json"
ENC, OPS = "tests/encoders", "tests/ops"

#: source file -> the test files run against each of its mutants
TESTS: dict[str, list[str]] = {
    "components/ops/group_index.py": [
        f"{OPS}/test_group_index.py",
        f"{OPS}/test_hashing_index_contract.py",
    ],
    "components/ops/grouping.py": [
        f"{OPS}/test_grouping.py",
        f"{OPS}/test_grouping_contract.py",
        f"{ENC}/test_no_silent_remap.py",
    ],
    "components/ops/jagged.py": [f"{OPS}/test_jagged.py", f"{OPS}/test_jagged_contract.py"],
    "components/ops/retrieval.py": [
        f"{OPS}/test_retrieval.py",
        f"{OPS}/test_retrieval_contract.py",
        f"{ENC}/test_meaning_sim.py",
    ],
    "components/ops/hashing.py": [
        f"{OPS}/test_hashing_clustering.py",
        f"{OPS}/test_hashing_index_contract.py",
        f"{ENC}/test_meaning_twin_sdim.py",
    ],
    "components/ops/clustering.py": [
        f"{OPS}/test_hashing_clustering.py",
        f"{OPS}/test_clustering_contract.py",
        f"{ENC}/test_meaning_twin_v2.py",
    ],
    "components/ops/symbolic.py": [
        f"{OPS}/test_symbolic.py",
        f"{OPS}/test_jagged.py",
        f"{OPS}/test_jagged_contract.py",
        f"{OPS}/test_grouping.py",
        f"{OPS}/test_grouping_contract.py",
        f"{ENC}/test_tracing.py",
    ],
    "components/layers/hstu.py": ["tests/layers/test_hstu.py"],
    "components/layers/din_activation.py": [
        "tests/layers/test_mlp.py",
        f"{ENC}/test_meaning_din_ciubm.py",
    ],
    "components/layers/mlp.py": ["tests/layers/test_mlp.py", f"{ENC}/test_meaning_din_ciubm.py"],
    "components/layers/self_attention.py": [
        "tests/layers/test_self_attention.py",
        f"{ENC}/test_meaning_dmgin.py",
    ],
    "components/layers/target_attention.py": [
        "tests/layers/test_target_attention.py",
        f"{ENC}/test_meaning_sim.py",
        f"{ENC}/test_tracing.py",
    ],
    "components/layers/time_buckets.py": [
        "tests/layers/test_time_buckets.py",
        f"{ENC}/test_meaning_sim.py",
    ],
    "components/layers/attention_dropout.py": [
        "tests/layers/test_attention_dropout.py",
        f"{ENC}/test_meaning_ctr.py",
    ],
    "components/layers/numeric.py": [
        "tests/layers/test_numeric.py",
        "tests/train/test_numeric_scaling.py",
    ],
    "components/encoders/base.py": [
        f"{ENC}/test_base_contract.py",
        f"{ENC}/test_example_inputs.py",
        f"{ENC}/test_ranking.py",
        f"{ENC}/test_lookup_plan.py",
    ],
    "components/encoders/example_inputs.py": [f"{ENC}/test_example_inputs.py"],
    "components/encoders/registry.py": [f"{ENC}/test_registry.py"],
    "components/encoders/din.py": [
        f"{ENC}/test_baseline_contract.py",
        f"{ENC}/test_meaning_din_ciubm.py",
        f"{ENC}/test_baselines.py",
        f"{ENC}/test_lookup_plan.py",
        f"{ENC}/test_tracing.py",
    ],
    "components/encoders/sim.py": [
        f"{ENC}/test_baseline_contract.py",
        f"{ENC}/test_meaning_sim.py",
        f"{ENC}/test_baselines.py",
        f"{ENC}/test_ranking.py",
        f"{ENC}/test_search_state.py",
        f"{ENC}/test_lookup_plan.py",
        f"{ENC}/test_tracing.py",
    ],
    "components/encoders/eta.py": [
        f"{ENC}/test_baseline_contract.py",
        f"{ENC}/test_meaning_sim.py",
        f"{ENC}/test_ranking.py",
        f"{ENC}/test_lookup_plan.py",
        f"{ENC}/test_tracing.py",
    ],
    "components/encoders/ciubm.py": [
        f"{ENC}/test_ciubm_contract.py",
        f"{ENC}/test_ranking.py",
        f"{ENC}/test_lookup_plan.py",
        f"{ENC}/test_meaning_din_ciubm.py",
        f"{ENC}/test_ciubm.py",
        f"{ENC}/test_tracing.py",
        f"{ENC}/test_baseline_contract.py",
    ],
    "components/encoders/twin.py": [
        f"{ENC}/test_baseline_contract.py",
        f"{ENC}/test_meaning_twin_sdim.py",
        f"{ENC}/test_ranking.py",
        f"{ENC}/test_lookup_plan.py",
        f"{ENC}/test_tracing.py",
    ],
    "components/encoders/sdim.py": [
        f"{ENC}/test_baseline_contract.py",
        f"{ENC}/test_meaning_twin_sdim.py",
        f"{ENC}/test_ranking.py",
        f"{ENC}/test_lookup_plan.py",
        f"{ENC}/test_tracing.py",
    ],
    "components/encoders/twin_v2.py": [
        f"{ENC}/test_baseline_contract.py",
        f"{ENC}/test_meaning_twin_v2.py",
        f"{ENC}/test_ranking.py",
        f"{ENC}/test_lookup_plan.py",
        f"{ENC}/test_tracing.py",
    ],
    "components/encoders/dmgin_state.py": [f"{ENC}/test_dmgin_state.py"],
    "components/encoders/search_state.py": [f"{ENC}/test_search_state.py"],
    "components/encoders/dmgin.py": [
        f"{ENC}/test_dmgin_contract.py",
        f"{ENC}/test_meaning_dmgin.py",
        f"{ENC}/test_dmgin.py",
        f"{ENC}/test_no_silent_remap.py",
        f"{ENC}/test_lookup_plan.py",
        f"{ENC}/test_dmgin_state.py",
        f"{ENC}/test_ranking.py",
        f"{ENC}/test_tracing.py",
    ],
    "components/head.py": [
        f"{ENC}/test_head_contract.py",
        f"{ENC}/test_no_silent_remap.py",
        f"{ENC}/test_meaning_ctr.py",
        f"{ENC}/test_lookup_plan.py",
        f"{ENC}/test_ranking.py",
    ],
}
COPIED = ("components", "pipelines", "benchmarks", "recipes", "tests", "pyproject.toml")
STATUS_LINE = re.compile(r"^\s+(\S+): (.+)$")


_IGNORED = shutil.ignore_patterns("__pycache__", ".hypothesis", "mutants", "results")


def _copy_repo(workdir: Path) -> None:
    for name in COPIED:
        source, target = REPO / name, workdir / name
        if source.is_dir():
            shutil.copytree(source, target, ignore=_IGNORED)
        else:
            shutil.copy2(source, target)


def _mutmut_config(source: str, tests: list[str]) -> str:
    def toml_list(items: list[str]) -> str:
        return "[" + ", ".join(json.dumps(i) for i in items) + "]"

    return f"""
[tool.mutmut]
source_paths = ["components"]
only_mutate = [{json.dumps(source)}]
also_copy = ["pipelines/", "benchmarks/", "recipes/"]
pytest_add_cli_args = ["-p", "no:cacheprovider", "--hypothesis-seed=0", "-x", "-q"]
pytest_add_cli_args_test_selection = {toml_list(tests)}
process_isolation = "forkserver"
use_git_change_detection = false
timeout_multiplier = 5.0
timeout_constant = 10.0
"""


def _statuses(root: Path, env: dict[str, str]) -> dict[str, str]:
    """mutmut's status of every mutant generated in ``root``."""
    listing = subprocess.run(
        [sys.executable, "-m", "mutmut", "results", "--all", "true"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )
    statuses: dict[str, str] = {}
    for line in listing.stdout.splitlines():
        match = STATUS_LINE.match(line)
        if match:
            statuses[match.group(1)] = match.group(2).strip()
    return statuses


def recheck(
    root: Path, tests: list[str], names: list[str], env: dict[str, str], jobs: int = 1
) -> dict[str, str]:
    """Run the whole test selection against each mutant in ``names`` (``MUTANT_UNDER_TEST`` in
    the copy's ``mutants/`` tree): ``killed``, ``survived`` or ``timeout`` for each.

    mutmut runs a mutant only against the tests that called its function in mutmut's own stats
    run; calls made while torch.export traces, and results computed when pytest collects, are
    missed there, so a mutant that the selected tests do kill can be reported as survived or as
    "no tests". This runs them all, after checking that the unmutated copy passes; ``jobs``
    mutants at a time (each in its own pytest process)."""
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider"]
    command += ["--hypothesis-seed=0", *tests]
    started = time.monotonic()
    base = subprocess.run(command, cwd=root / "mutants", env=env, capture_output=True, text=True)
    if base.returncode:
        raise RuntimeError(f"the unmutated copy fails its tests in {root}:\n{base.stdout[-2000:]}")
    limit = 10 * (time.monotonic() - started) + 30

    def status(name: str) -> str:
        try:
            run = subprocess.run(
                command,
                cwd=root / "mutants",
                env={**env, "MUTANT_UNDER_TEST": name},
                capture_output=True,
                timeout=limit,
            )
        except subprocess.TimeoutExpired:
            return "timeout"
        return "killed" if run.returncode else "survived"

    with ThreadPoolExecutor(max_workers=max(jobs, 1)) as pool:
        return dict(zip(names, pool.map(status, names), strict=True))


def summarize(source: str, statuses: dict[str, str], rechecked: dict[str, str]) -> dict:
    """Counts per status after the recheck (a rechecked mutant takes its recheck status)."""
    final = {**statuses, **rechecked}
    counts: dict[str, int] = {}
    for status in final.values():
        counts[status] = counts.get(status, 0) + 1
    return {
        "tests": TESTS[source],
        "mutants": len(final),
        "killed": counts.get("killed", 0),
        "survived": counts.get("survived", 0),
        "timeout": counts.get("timeout", 0),
        "other": {k: v for k, v in counts.items() if k not in ("killed", "survived", "timeout")},
        "survivors": sorted(n for n, s in final.items() if s == "survived"),
        "rechecked": {
            "mutants": len(rechecked),
            "killed": sum(s == "killed" for s in rechecked.values()),
        },
    }


def _run_root(workdir: Path, source: str) -> Path:
    """The folder of ``source``'s run under ``workdir``."""
    return workdir / source.replace("/", "_").removesuffix(".py")


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}


def _unresolved(statuses: dict[str, str]) -> list[str]:
    return sorted(n for n, s in statuses.items() if s in ("survived", "no tests"))


def run_file(source: str, workdir: Path, max_children: int) -> dict:
    """Mutate one source file in a fresh copy under ``workdir``; its counts and survivors."""
    root = _run_root(workdir, source)
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    _copy_repo(root)
    with open(root / "pyproject.toml", "a") as config:
        config.write(_mutmut_config(source, TESTS[source]))
    env = _env()
    started = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "mutmut", "run", "--max-children", str(max_children)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )
    (root / "mutmut-run.log").write_text(run.stdout + run.stderr)
    statuses = _statuses(root, env)
    rechecked = (
        {}
        if run.returncode
        else recheck(root, TESTS[source], _unresolved(statuses), env, max_children)
    )
    result = summarize(source, statuses, rechecked)
    result.update(
        seconds=round(time.monotonic() - started, 1), mutmut_exit=run.returncode, workdir=str(root)
    )
    if run.returncode:  # e.g. the selected tests fail on the unmutated copy ("not checked")
        result["error"] = (run.stdout + run.stderr).strip().splitlines()[-1:]
        print(f"mutmut failed on {source}: {result['error']}", file=sys.stderr, flush=True)
    return result


def recheck_kept(source: str, workdir: Path, jobs: int = 1) -> dict:
    """Re-check the survivors of an earlier kept run (``--keep``) of ``source`` against the
    repository's tests as they are now (copied over the run's ``tests/``)."""
    root = _run_root(workdir, source)
    if not (root / "mutants").is_dir():
        raise FileNotFoundError(f"no kept mutmut run of {source} under {root}")
    env = _env()
    shutil.rmtree(root / "mutants" / "tests")
    shutil.copytree(REPO / "tests", root / "mutants" / "tests", ignore=_IGNORED)
    for name in ("benchmarks", "recipes"):  # runs kept before these were copied lack them
        if not (root / "mutants" / name).exists():
            shutil.copytree(REPO / name, root / "mutants" / name, ignore=_IGNORED)
    started = time.monotonic()
    statuses = _statuses(root, env)
    names = _unresolved(statuses)
    result = summarize(source, statuses, recheck(root, TESTS[source], names, env, jobs))
    result.update(seconds=round(time.monotonic() - started, 1), workdir=str(root))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", help=f"default: all of {len(TESTS)} files")
    parser.add_argument("--workdir", type=Path, help="scratch folder (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the workdir (mutmut show)")
    parser.add_argument(
        "--max-children", type=int, default=1, help="mutmut worker processes (and --recheck's)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--recheck",
        action="store_true",
        help="no new run: re-check the survivors of the kept run under --workdir against the "
        "tests as they are now",
    )
    args = parser.parse_args(argv)
    if args.recheck and args.workdir is None:
        parser.error("--recheck needs the --workdir of a kept run")
    files = args.files or list(TESTS)
    unknown = [f for f in files if f not in TESTS]
    if unknown:
        parser.error(f"no test selection for {unknown}; add them to TESTS in {__file__}")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="lifelongrec-mutants-"))
    report = json.loads(args.out.read_text()) if args.out.exists() else {}
    report.setdefault("files", {})
    report["tool"] = "mutmut " + _mutmut_version()
    report["command"] = "python -m benchmarks.mutants " + " ".join(files)
    if args.recheck:
        report["command"] += f" --recheck --workdir {args.workdir}"
    try:
        for source in files:
            print(f"mutating {source} (tests: {' '.join(TESTS[source])})", flush=True)
            if args.recheck:
                result = recheck_kept(source, workdir, args.max_children)
            else:
                result = run_file(source, workdir, args.max_children)
            if not args.keep:
                result.pop("workdir")
            report["files"][source] = result
            print(json.dumps({k: v for k, v in result.items() if k != "survivors"}), flush=True)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(report, indent=2) + "\n")
    finally:
        if not args.keep and args.workdir is None and not args.recheck:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


def _mutmut_version() -> str:
    from importlib.metadata import version

    return version("mutmut")


if __name__ == "__main__":
    raise SystemExit(main())
