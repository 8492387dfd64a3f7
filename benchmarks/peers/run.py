"""Peer benchmark: FuxiCTR's LongCTR models and ours, trained on the same samples, side by side.

For each model (ours -> FuxiCTR: DIN -> DIN, SIMSoft -> SIM soft, ETA -> ETA, SDIM -> SDIM,
TWIN -> TWIN) and each learning rate of the grid, one FuxiCTR training (its own trainer in its
own venv, :mod:`benchmarks.peers.fuxictr_worker`) and one of ours (``pipelines.train`` via the
quality benchmark's child process) run on the same aligned data
(:mod:`benchmarks.peers.convert`): same train / valid / test samples, history window, embedding
dim, hidden units, batch size, epochs, seed, best-valid-AUC state for the test. Each side's rate
is chosen by its own valid AUC. Settings that could not be aligned are listed in the results.

``--throughput`` instead trains a few steps of every model on train samples whose history fills
the window, at windows 1,000 and 10,000, and reports train samples/s ours / FuxiCTR's.

Usage::

    python -m benchmarks.peers setup [--wheel fuxictr-2.3.10-py3-none-any.whl]
    python -m benchmarks.peers --dataset ml-1m-u2999 [--models DIN,SIMSoft,ETA,SDIM,TWIN]
        [--lrs 0.002,0.004] [--epochs 2] [--train-limit 40000] [--valid-limit 15000] [--seed 0]
    python -m benchmarks.peers --dataset spotify-streaming-u13 --throughput [--windows 1000,10000]
    python -m benchmarks.peers --smoke --results-dir /tmp/out   # synthetic, a few hundred samples
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from benchmarks.common import REPO_ROOT, RESULTS_DIR, environment, update_json, utc_now
from benchmarks.peers.convert import derive_aligned, to_longctr
from benchmarks.peers.env import installed_info, peer_ready, setup
from benchmarks.peers.report import UNALIGNED, choose, render_markdown, write_markdown
from benchmarks.peers.sides import PEER_MODELS, Shared, ours_missing, train_ours, train_theirs
from benchmarks.quality.data import DATASETS, DatasetSpec, ensure_prepared
from pipelines.console import parse_cli, progress

PEER_DATASETS: dict[str, DatasetSpec] = {
    **{k: v for k, v in DATASETS.items() if k in ("ml-1m-u2999", "synthetic-smoke")},
    "spotify-streaming-u13": DatasetSpec(
        "spotify-streaming-u13", "spotify-streaming-u13", "spotify", "ml1m"
    ),
}
DEFAULT_MODELS = ",".join(PEER_MODELS)
SMOKE = {"train_limit": 300, "epochs": 1, "lrs": "0.002", "batch_size": 64, "max_len": 200}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "command",
        nargs="?",
        choices=["run", "setup"],
        default="run",
        help="setup: create .peers/venv with FuxiCTR; run (default): benchmark",
    )
    parser.add_argument("--wheel", type=Path, default=None, help="setup: FuxiCTR wheel file")
    parser.add_argument("--dataset", choices=sorted(PEER_DATASETS), default=None)
    parser.add_argument("--models", default=DEFAULT_MODELS, help="comma-separated, ours' names")
    parser.add_argument(
        "--lrs",
        default=None,
        help="learning-rate grid (default 0.002,0.004, as benchmarks.quality)",
    )
    parser.add_argument("--epochs", type=int, default=None, help="default 2")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-len", type=int, default=None, help="history window (1000)")
    parser.add_argument("--embedding-dim", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=None, help="default 1024")
    parser.add_argument("--hidden-units", default="128,64")
    parser.add_argument(
        "--train-limit",
        type=int,
        default=None,
        help="seeded train subsample of this many rows (default: all)",
    )
    parser.add_argument(
        "--valid-limit",
        type=int,
        default=None,
        help="seeded valid subsample (default: all); test is always whole",
    )
    parser.add_argument("--throughput", action="store_true", help="samples/s at --windows")
    parser.add_argument("--windows", default="1000,10000", help="throughput history windows")
    parser.add_argument("--throughput-steps", type=int, default=4)
    parser.add_argument(
        "--throughput-samples",
        type=int,
        default=None,
        help="train rows per window (default: steps x batch)",
    )
    parser.add_argument("--smoke", action="store_true", help="synthetic, a few hundred samples")
    parser.add_argument("--data-dir", type=Path, default=REPO_ROOT / "data")
    parser.add_argument("--runs-dir", type=Path, default=REPO_ROOT / "runs" / "bench" / "peers")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--timeout", type=float, default=None, help="seconds per training")
    args = parse_cli(parser, argv)
    if args.smoke:
        args.dataset = args.dataset or "synthetic-smoke"
        for key, value in SMOKE.items():
            if getattr(args, key) is None:
                setattr(args, key, value)
    defaults = {"dataset": "ml-1m-u2999", "lrs": "0.002,0.004", "epochs": 2,
                "batch_size": 1024, "max_len": 1000}  # fmt: skip
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def _list(text: str, kind: type) -> list[Any]:
    try:
        values = [kind(x) for x in text.split(",") if x.strip()]
    except ValueError as err:
        raise SystemExit(f"cannot parse {text!r}: {err}") from err
    if not values:
        raise SystemExit(f"empty list {text!r}")
    return values


def _pair(name: str, lr: float, shared: Shared, root: Path, longctr: Path, out: Path,
          timeout: float | None, prefix: str) -> dict[str, Any]:  # fmt: skip
    missing = ours_missing(name, prefix)
    theirs = train_theirs(name, lr, shared, root, longctr, out, timeout)
    if missing:
        ours: dict[str, Any] = {
            "side": "ours",
            "model": name,
            "status": "skipped",
            "error": missing,
        }
    else:
        ours = train_ours(name, lr, shared, root, out, timeout)
    return {"theirs": theirs, "ours": ours}


def run_quality(args: argparse.Namespace, spec: DatasetSpec, models: list[str]) -> dict[str, Any]:
    source = ensure_prepared(spec, args.data_dir.resolve())
    tag = f"n{args.train_limit or 'all'}_v{args.valid_limit or 'all'}_s{args.seed}"
    root = derive_aligned(source, args.data_dir.resolve() / "peers" / f"{spec.directory}_{tag}",
                          args.train_limit, args.seed, valid_limit=args.valid_limit)  # fmt: skip
    longctr = root / "longctr"
    facts = to_longctr(root, longctr)
    shared = Shared(args.max_len, args.embedding_dim, args.batch_size, args.epochs,
                    tuple(_list(args.hidden_units, int)), args.seed)  # fmt: skip
    runs: dict[str, dict[str, Any]] = {}
    plan = [(m, lr) for m in models for lr in _list(args.lrs, float)]
    bar = progress(plan, desc=f"peers {spec.name}", unit="pair")
    for name, lr in bar:
        bar.set_postfix_str(f"{name} lr{lr:g}")
        out = args.runs_dir.resolve() / spec.name / name / f"lr{lr:g}_s{args.seed}"
        runs.setdefault(name, {})[f"lr{lr:g}"] = _pair(
            name, lr, shared, root, longctr, out, args.timeout, spec.recipe_prefix
        )
    return {
        "mode": "smoke" if args.smoke else "quality",
        "settings": {
            **vars(shared),
            "lrs": _list(args.lrs, float),
            "models": models,
            "train_limit": args.train_limit,
            "valid_limit": args.valid_limit,
            "longctr_rows": facts["rows"],
        },  # fmt: skip
        "aligned_dataset": str(root),
        "runs": runs,
        "chosen": choose(runs),
    }


def run_throughput(
    args: argparse.Namespace, spec: DatasetSpec, models: list[str]
) -> dict[str, Any]:
    from benchmarks.peers.convert import derive_window

    source = ensure_prepared(spec, args.data_dir.resolve())
    rows = args.throughput_samples or args.throughput_steps * args.batch_size
    lr = _list(args.lrs, float)[0]
    result: dict[str, Any] = {"mode": "throughput", "steps": args.throughput_steps,
                              "batch_size": args.batch_size, "lr": lr, "windows": {}}  # fmt: skip
    for window in _list(args.windows, int):
        root = derive_window(source, args.data_dir.resolve() / "peers" /
                             f"{spec.directory}_w{window}_n{rows}", window, rows, args.seed,
                             args.batch_size)  # fmt: skip
        longctr = root / "longctr"
        facts = to_longctr(root, longctr)
        shared = Shared(window, args.embedding_dim, args.batch_size, 1,
                        tuple(_list(args.hidden_units, int)), args.seed,
                        max_steps=args.throughput_steps)  # fmt: skip
        entry: dict[str, Any] = {"train_rows": facts["rows"]["train"], "models": {}}
        for name in progress(models, desc=f"throughput L={window}", unit="model"):
            out = args.runs_dir.resolve() / spec.name / "throughput" / f"L{window}" / name
            pair = _pair(name, lr, shared, root, longctr, out, args.timeout, spec.recipe_prefix)
            ours, theirs = (
                pair["ours"].get("samples_per_second"),
                pair["theirs"].get("samples_per_second"),
            )
            pair["ratio_ours_over_theirs"] = ours / theirs if ours and theirs else None
            entry["models"][name] = pair
        result["windows"][str(window)] = entry
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "setup":
        print(setup(args.wheel))
        return 0
    reason = peer_ready()
    if reason:
        raise SystemExit(reason)
    models = _list(args.models, str)
    unknown = [m for m in models if m not in PEER_MODELS]
    if unknown:
        raise SystemExit(f"no FuxiCTR counterpart for {unknown}; choose from {list(PEER_MODELS)}")
    spec = PEER_DATASETS[args.dataset]
    block = (
        run_throughput(args, spec, models) if args.throughput else run_quality(args, spec, models)
    )
    block.update(
        finished=utc_now(),
        command=" ".join(["python -m benchmarks.peers", *(argv or sys.argv[1:])]),
    )
    key = "throughput" if args.throughput else "quality"
    path = args.results_dir.resolve() / "peers.json"

    def store(data: dict[str, Any]) -> None:
        data["benchmark"] = "peers"
        data["unaligned"] = UNALIGNED
        data["environment"] = environment()
        data["peer_environment"] = installed_info()
        store_block(data, spec.name, key, block)

    data = update_json(path, store)
    markdown = write_markdown(data, args.results_dir.resolve() / "peers.md")
    print(render_markdown(data, only=spec.name))
    print(f"wrote {path} and {markdown}")
    failed = [
        f"{name} {key} {side}"
        for name, pairs in _pairs(block).items()
        for key, pair in pairs.items()
        for side in ("ours", "theirs")
        if pair[side]["status"] == "failed"
    ]
    if failed:
        print("FAILED: " + ", ".join(failed))
    return 1 if failed else 0


def store_block(data: dict[str, Any], dataset: str, key: str, block: dict[str, Any]) -> None:
    """Put a run's ``block`` under ``data["datasets"][dataset][key]``. A throughput block at the
    same batch size keeps the earlier windows and models; a quality block with the same protocol
    (every setting but the model list) keeps the earlier models' rows beside the new ones;
    anything else replaces what was there."""
    blocks = data.setdefault("datasets", {}).setdefault(dataset, {})
    previous = blocks.get(key)
    if key == "throughput" and previous and previous.get("batch_size") == block["batch_size"]:
        for window, entry in block["windows"].items():  # keep the other windows / models
            kept = previous["windows"].setdefault(window, entry)
            kept["models"].update(entry["models"])
        previous.update({k: v for k, v in block.items() if k != "windows"})
        block.update(previous)
    elif key == "quality" and previous and _same_protocol(previous, block):
        for field in ("runs", "chosen"):
            block[field] = {**previous.get(field, {}), **block[field]}
        models = [*previous["settings"]["models"], *block["settings"]["models"]]
        block["settings"]["models"] = list(dict.fromkeys(models))
        commands = previous.get("commands", [previous.get("command")])
        block["commands"] = [*[c for c in commands if c], block["command"]]
    blocks[key] = block


def _same_protocol(previous: dict[str, Any], block: dict[str, Any]) -> bool:
    """Whether two quality blocks ran the same protocol (every setting but the model list)."""
    ignore = {"models"}
    a = {k: v for k, v in previous.get("settings", {}).items() if k not in ignore}
    b = {k: v for k, v in block.get("settings", {}).items() if k not in ignore}
    return a == b


def _pairs(block: dict[str, Any]) -> dict[str, dict[str, Any]]:
    if block["mode"] != "throughput":
        return block["runs"]
    out: dict[str, dict[str, Any]] = {}
    for window, entry in block["windows"].items():
        for name, pair in entry["models"].items():
            out.setdefault(name, {})[f"L{window}"] = pair
    return out
