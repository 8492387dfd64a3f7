"""Data benchmark: prepare time of a real log, SampleLoader throughput and peak memory.

Configurations, each run in a fresh subprocess so its peak RSS (``VmHWM``) is its own:

* ``prepare``: ``python -m pipelines.prepare --dataset movielens-1m-u2999`` (named adapter,
  min over ``--repeats`` runs);
* for each history length L in ``--lengths`` (default 1000 and 10000): a synthetic log whose
  every sample has at least L past events (``pipelines.data.synthetic``, users x 2L..4L events),
  then ``SampleLoader`` over its train split with ``max_len = L`` (``--epochs`` passes, batch
  ``--batch``, no workers): samples/s, history rows/s, peak RSS.

Each child also reports its RSS right after its imports (torch, torchrec, pandas), so the growth
due to the work itself is ``peak - after imports``. Timings on the shared 2-core machine are
noisy. ``--smoke`` runs tiny sizes in a few seconds (MovieLens-100k for prepare).

Usage::

    python -m benchmarks.data [--lengths 1000,10000] [--batch 256] [--epochs 2] [--smoke]

Results: printed and written to ``benchmarks/results/data.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pipelines.console import parse_cli, progress
from pipelines.train.memory import peak_rss_mib as _peak_rss_mib

RESULTS = Path(__file__).resolve().parent / "results" / "data.json"
REPO_ROOT = Path(__file__).resolve().parents[1]


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, in MiB (VmHWM: not the parent's)."""
    return round(_peak_rss_mib(), 1)


# -- children: one configuration each ---------------------------------------------------------


def child_prepare(spec: dict[str, Any]) -> dict[str, Any]:
    """Time the named adapter's prepare (imports excluded) ``spec['repeats']`` times."""
    import pipelines.data.adapters  # noqa: F401  (imports are not part of the timing)
    import pipelines.data.build  # noqa: F401
    from pipelines.data.prepare import main as prepare_main

    baseline = peak_rss_mib()
    seconds = []
    with tempfile.TemporaryDirectory(prefix="bench-prepare-") as tmp:
        out = Path(tmp) / "prepared"
        argv = ["--dataset", spec["dataset"], "--data-root", spec["data_root"], "--out", str(out)]
        for _ in range(spec["repeats"]):
            start = time.perf_counter()
            if prepare_main(argv) != 0:
                raise RuntimeError(f"prepare failed: {argv}")
            seconds.append(time.perf_counter() - start)
        counts = json.loads((out / "manifest.json").read_text())["counts"]
    return {
        "seconds": round(min(seconds), 3),
        "seconds_all": [round(s, 3) for s in seconds],
        "events": counts["events"],
        "samples": counts["samples"],
        "rss_after_imports_mib": baseline,
        "peak_rss_mib": peak_rss_mib(),
    }


def child_synthetic(spec: dict[str, Any]) -> dict[str, Any]:
    """Generate and write a synthetic log whose every sample has >= ``length`` past events."""
    from pipelines.data.synthetic import SyntheticConfig, write_synthetic_dataset

    length = spec["length"]
    config = SyntheticConfig(
        users=spec["users"],
        mean_length=int(2.5 * length),
        min_length=2 * length,  # samples sit at >= half of a user's timeline: cutoff >= length
        max_length=4 * length,
        items=spec["items"],
        samples_per_user=spec["samples_per_user"],
        seed=spec["seed"],
    )
    baseline = peak_rss_mib()
    start = time.perf_counter()
    write_synthetic_dataset(spec["out"], config)
    seconds = time.perf_counter() - start
    manifest = json.loads((Path(spec["out"]) / "manifest.json").read_text())
    return {
        "seconds": round(seconds, 3),
        "events": manifest["counts"]["events"],
        "rss_after_imports_mib": baseline,
        "peak_rss_mib": peak_rss_mib(),
    }


def child_loader(spec: dict[str, Any]) -> dict[str, Any]:
    """Iterate the train split ``spec['epochs']`` times; the event log load is timed apart."""
    from pipelines.data.loader import LoaderConfig, SampleLoader

    baseline = peak_rss_mib()
    config = LoaderConfig(batch_size=spec["batch"], max_len=spec["length"], seed=0)
    loader = SampleLoader(spec["dataset"], "train", config)
    start = time.perf_counter()
    _ = loader.events
    load_seconds = time.perf_counter() - start
    samples = rows = batches = 0
    start = time.perf_counter()
    for epoch in range(spec["epochs"]):
        loader.set_epoch(epoch)
        for batch in loader:
            real = batch.weights > 0  # the padded tail of the last batch does not count
            samples += int(real.sum())
            rows += int(batch.history_lengths[real].sum())
            batches += 1
    seconds = time.perf_counter() - start
    return {
        "events_load_seconds": round(load_seconds, 3),
        "seconds": round(seconds, 3),
        "batches": batches,
        "samples": samples,
        "mean_history": round(rows / max(samples, 1), 1),
        "samples_per_s": round(samples / seconds, 1),
        "history_rows_per_s": round(rows / seconds, 1),
        "rss_after_imports_mib": baseline,
        "peak_rss_mib": peak_rss_mib(),
    }


CHILDREN = {"prepare": child_prepare, "synthetic": child_synthetic, "loader": child_loader}


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one configuration in a fresh interpreter; its last stdout line is the JSON result."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.data", "--child", json.dumps(spec)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"configuration {spec} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- parent ------------------------------------------------------------------------------------


def format_table(result: dict[str, Any]) -> str:
    header = ["configuration", "seconds", "samples/s", "peak RSS MiB", "after imports MiB"]
    lines = []
    prep = result["prepare"]
    if "skipped" in prep:
        lines.append([f"prepare {prep['dataset']}", "skipped", "", "", ""])
    else:
        lines.append(
            [
                f"prepare {prep['dataset']} ({prep['events']:,} events)",
                f"{prep['seconds']:.2f}",
                "",
                f"{prep['peak_rss_mib']:.0f}",
                f"{prep['rss_after_imports_mib']:.0f}",
            ]
        )
    for row in result["loader"]:
        gen = row["synthetic"]
        lines.append(
            [
                f"synthetic L={row['history_length']} ({gen['events']:,} events)",
                f"{gen['seconds']:.2f}",
                "",
                f"{gen['peak_rss_mib']:.0f}",
                f"{gen['rss_after_imports_mib']:.0f}",
            ]
        )
        lines.append(
            [
                f"loader max_len={row['history_length']} batch={row['batch_size']}",
                f"{row['seconds']:.2f}",
                f"{row['samples_per_s']:,.0f}",
                f"{row['peak_rss_mib']:.0f}",
                f"{row['rss_after_imports_mib']:.0f}",
            ]
        )
    widths = [max(len(str(r[i])) for r in [header, *lines]) for i in range(len(header))]

    def fmt(cells: list[str]) -> str:
        return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()

    return "\n".join([fmt(header), fmt(["-" * w for w in widths]), *map(fmt, lines)])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="1000,10000", help="loader history lengths")
    parser.add_argument("--users", default="1000,100", help="synthetic users per length")
    parser.add_argument("--samples-per-user", type=int, default=20)
    parser.add_argument("--items", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="prepare runs (min reported)")
    parser.add_argument("--dataset", default="movielens-1m-u2999", help="adapter to prepare")
    parser.add_argument("--data-root", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, a few seconds")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parse_cli(parser, argv)
    if args.smoke:
        args.lengths, args.users, args.samples_per_user = "20,100", "20,10", 5
        args.items, args.batch, args.epochs, args.repeats = 500, 16, 1, 1
        args.dataset = "movielens-100k"
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.child:
        spec = json.loads(args.child)
        print(json.dumps(CHILDREN[spec["kind"]](spec)))
        return {}
    from pipelines.data.prepare import default_data_root

    data_root = args.data_root or default_data_root()
    lengths = [int(x) for x in args.lengths.split(",")]
    users = [int(x) for x in args.users.split(",")]
    if len(users) != len(lengths):
        raise SystemExit("--users needs one value per --lengths value")

    result: dict[str, Any] = {
        "benchmark": "data",
        "mode": "smoke" if args.smoke else "full",
        "settings": {**vars(args), "output": str(args.output), "data_root": str(data_root)},
        "machine": platform.platform(),
        "python": platform.python_version(),
        "note": "each configuration in a fresh subprocess; peak RSS = VmHWM of that process "
        "(imports included, see rss_after_imports_mib); shared 2-core machine, timings are noisy",
    }
    del result["settings"]["child"]
    steps = 1 + 2 * len(lengths)
    with (
        tempfile.TemporaryDirectory(prefix="bench-data-") as work,
        progress(total=steps, unit="step") as bar,
    ):
        bar.set_description(f"prepare {args.dataset}")
        if data_root.is_dir():
            spec = {"kind": "prepare", "dataset": args.dataset, "data_root": str(data_root)}
            prepare = run_child({**spec, "repeats": args.repeats})
            result["prepare"] = {"dataset": args.dataset, **prepare}
            bar.write(json.dumps(result["prepare"]))
        else:
            result["prepare"] = {"dataset": args.dataset, "skipped": f"{data_root} is absent"}
        bar.update()
        result["loader"] = []
        for length, n_users in zip(lengths, users):
            out = str(Path(work) / f"synthetic-{length}")
            bar.set_description(f"synthetic L={length}")
            synthetic = run_child(
                {
                    "kind": "synthetic",
                    "length": length,
                    "users": n_users,
                    "items": args.items,
                    "samples_per_user": args.samples_per_user,
                    "seed": args.seed,
                    "out": out,
                }
            )
            bar.update()
            bar.set_description(f"loader L={length}")
            spec = {"dataset": out, "length": length, "batch": args.batch, "epochs": args.epochs}
            loader = run_child({"kind": "loader", **spec})
            bar.update()
            row = {
                "history_length": length,
                "users": n_users,
                "batch_size": args.batch,
                "epochs": args.epochs,
                **loader,
                "synthetic": synthetic,
            }
            result["loader"].append(row)
            bar.write(json.dumps(row))

    print(format_table(result))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_name(args.output.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(args.output)
    print(f"wrote {args.output}")
    return result


if __name__ == "__main__":
    main()
