"""The peer benchmark's choices, the settings it could not align, and its markdown tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.common import fmt, markdown_table, write_text_atomic

#: what differs between the two sides although the benchmark tried to align it
UNALIGNED: list[str] = [
    "optimizer: ours = row-wise Adagrad (lr 0.05) on the embedding tables + Adam at the grid's "
    "rate on the dense part; FuxiCTR = one Adam at the grid's rate on every parameter",
    "gradient clipping: FuxiCTR's trainer clips the gradient norm at 10 (its default); ours "
    "does not clip",
    "events: only item and category per history position on both sides (LongCTR sequences "
    "look positions up in an item table); the prepared behavior id (ml-1m: past rating, "
    "spotify: past outcome) and numeric fields are removed for this benchmark, so these "
    "numbers are not the quality benchmark's",
    "encoder internals follow each side's defaults: attention sizes and heads, activations "
    "(FuxiCTR's DIN attention MLP uses Dice), initialisation; ours SIMSoft/ETA add a "
    "time-interval embedding (time_dim 8), SIMSoft an auxiliary GSU loss",
    "FuxiCTR's SIM / ETA / SDIM / TWIN add a target attention over the last 50 behaviors "
    "(short_seq_len 50) to the long-sequence part; ours read only the retrieved / hashed rows",
    "DIN: ours loads the window and attends over its last 50; FuxiCTR's DIN attends over its "
    "whole loaded window, so it loads the last 50 (same 50 behaviors)",
    "last partial train batch: FuxiCTR trains on it, ours drops it (samples/s counts each "
    "side's own samples)",
    "over-arch input: ours [interest, candidate, user]; FuxiCTR [user, candidate, interest] "
    "plus the candidate's fields once more; hidden units are the same",
    "validation: ours scores valid with batch 4096, FuxiCTR with the train batch size (no "
    "effect on the metrics); both keep the best-valid-AUC state, patience 2, no lr decay",
    "lookup plan: quality runs pin train.lookup_plan=false as benchmarks.quality does (every "
    "history row looked up); --throughput runs use our default, the plan on",
    "test metrics: both sides' AUC / GAUC / logloss come from pipelines.evaluate.metrics on "
    "their test predictions; FuxiCTR's own values (its gAUC definition) are kept as own_test_metrics",
]


def choose(runs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per model and side: the learning rate with the best valid AUC among ok runs."""
    chosen: dict[str, dict[str, Any]] = {}
    for name, pairs in runs.items():
        for side in ("ours", "theirs"):
            ok = [
                (key, pair[side])
                for key, pair in pairs.items()
                if pair[side].get("status") == "ok" and pair[side].get("valid_auc") is not None
            ]
            if ok:
                key, record = max(ok, key=lambda kv: kv[1]["valid_auc"])
                chosen.setdefault(name, {})[side] = {"run": key, "lr": record.get("lr")}
    return chosen


def _quality_rows(block: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for name, pairs in block["runs"].items():
        for side, label in (("theirs", "FuxiCTR"), ("ours", "ours")):
            pick = block["chosen"].get(name, {}).get(side)
            if pick is None:
                reasons = {p[side].get("error") for p in pairs.values() if p[side].get("error")}
                rows.append(
                    [name, label, "-", "-", "-", "-", "-", "-", "-", "; ".join(sorted(reasons))]
                )
                continue
            r = pairs[pick["run"]][side]
            test = r["test"]
            rows.append([
                name, label, f"{pick['lr']:g}", fmt(test["auc"]), fmt(test["gauc"]),
                fmt(test["logloss"]), fmt(r["train_seconds_per_epoch"], 1),
                fmt(r["samples_per_second"], 0), fmt(r.get("peak_rss_mib"), 0),
                r.get("model", ""),
            ])  # fmt: skip
    return rows


def _throughput_rows(block: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for window, entry in block["windows"].items():
        for name, pair in entry["models"].items():
            ours, theirs = pair["ours"], pair["theirs"]
            rows.append([
                window, name, fmt(theirs.get("samples_per_second"), 0),
                fmt(ours.get("samples_per_second"), 0), fmt(pair.get("ratio_ours_over_theirs"), 2),
                ours.get("error", "") if ours.get("status") != "ok" else "",
            ])  # fmt: skip
    return rows


def render_markdown(data: dict[str, Any], only: str | None = None) -> str:
    """Tables per dataset (quality and throughput) and the unaligned settings."""
    lines = ["# Peer benchmark: FuxiCTR LongCTR vs ours", ""]
    for dataset, blocks in data.get("datasets", {}).items():
        if only is not None and dataset != only:
            continue
        quality = blocks.get("quality")
        if quality:
            s = quality["settings"]
            lines += [
                f"## {dataset} ({quality['mode']})", "",
                " then ".join(f"`{c}`" for c in quality.get("commands", [quality.get("command", "")]))
                + f", {quality.get('finished', '')}. Train rows "
                f"{s['longctr_rows']['train']} (subsample: {s['train_limit'] or 'none'}, seed "
                f"{s['seed']}), valid {s['longctr_rows']['valid']}, test {s['longctr_rows']['test']}; "
                f"window {s['max_len']}, embedding dim {s['embedding_dim']}, batch "
                f"{s['batch_size']}, epochs {s['epochs']}, hidden {list(s['hidden_units'])}, "
                f"lr grid {s['lrs']} (each side picks by its valid AUC).", "",
                markdown_table(
                    ["model", "side", "lr", "test AUC", "GAUC", "logloss", "train s/epoch",
                     "samples/s", "peak RSS MiB", "class / note"],
                    _quality_rows(quality),
                ), "",
            ]  # fmt: skip
        throughput = blocks.get("throughput")
        if throughput:
            lines += [
                f"## {dataset}: train throughput", "",
                f"`{throughput.get('command', '')}`: {throughput['steps']} steps of batch "
                f"{throughput['batch_size']} on train samples whose history fills the window.", "",
                markdown_table(["window", "model", "FuxiCTR samples/s", "ours samples/s",
                                "ours / FuxiCTR", "note"], _throughput_rows(throughput)),
                "",
            ]  # fmt: skip
    lines += ["## Not aligned", ""] + [f"- {item}" for item in data.get("unaligned", UNALIGNED)]
    return "\n".join(lines) + "\n"


def write_markdown(data: dict[str, Any], path: Path) -> Path:
    write_text_atomic(path, render_markdown(data))
    return path
