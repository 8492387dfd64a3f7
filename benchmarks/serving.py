"""Load benchmark of the ranking service (``python -m pipelines.serve``) on 127.0.0.1.

Usage::

    python -m benchmarks.serving                       # DMGIN and SIMHard, full grid
    python -m benchmarks.serving --encoders DMGIN --lengths 1000 --warm 20 --cold 3   # quick

For each encoder it writes an untrained model of the default size (E = 16, DMGIN G = 64,
M = 16, H = 32; SIMHard K = 50: latency does not depend on the weights), starts the service
with the in-process store, loads one user per history length L (appends of 10,000 behaviors
over 50 categories), then runs a bounded request loop from one client over a kept-alive
connection:

* cold: ``/rank`` with ``now`` moved past ``--max-state-age`` each time, so the state is
  rebuilt from the whole log on every request (what a user without a cached state costs);
* warm: ``/rank`` with the state cached;
* append: ``/append`` of one behavior to a cached state (the incremental update).

Latencies are client-side wall times (HTTP + JSON included); p50 / p99 and requests per
second go to ``benchmarks/results/serving.json`` with the machine and versions, together with
the targets of issue 20 (reported, not asserted): warm DMGIN p99 <= 20 ms at C = 1,000,
L = 50,000, and warm / cold p50 <= 0.2 at L = 10,000.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import REPO_ROOT, RESULTS_DIR, environment, write_json_atomic
from pipelines.console import parse_cli, progress

MAX_STATE_AGE = 3600.0
CATEGORIES = 50


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Client:
    """One kept-alive HTTP connection; :meth:`post` returns ``(ms, status, body)``."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)

    def post(self, path: str, body: dict[str, Any]) -> tuple[float, int, Any]:
        data = json.dumps(body).encode()
        start = time.perf_counter()
        self.conn.request("POST", path, body=data, headers={"Content-Type": "application/json"})
        response = self.conn.getresponse()
        text = response.read()
        ms = (time.perf_counter() - start) * 1e3
        return ms, response.status, json.loads(text)

    def close(self) -> None:
        self.conn.close()


def _write_model(encoder: str, path: Path) -> dict[str, int]:
    import torch

    from components.model import LifelongCTRModel, ModelConfig, Vocab
    from pipelines.serve.model_loader import save_model_file

    vocab = Vocab(users=100, items=100_000, categories=CATEGORIES + 1, behaviors=4, num_numeric=1)
    config = ModelConfig(encoder=encoder)
    torch.manual_seed(0)
    save_model_file(LifelongCTRModel(config, vocab).eval(), config, vocab, path)
    return {"items": vocab.items, "categories": vocab.categories, "behaviors": vocab.behaviors}


def _start(model: Path, threads: int) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipelines.serve",
            "--model",
            str(model),
            "--port",
            str(port),
            "--threads",
            str(threads),
            "--max-state-age",
            str(MAX_STATE_AGE),
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the service exited with code {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return proc, port
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise TimeoutError("the service did not start within 300 s")


def _events(rng: np.random.Generator, k: int, t0: float, vocab: dict[str, int]) -> dict:
    return {
        "items": rng.integers(1, vocab["items"], k).tolist(),
        "categories": rng.integers(1, vocab["categories"], k).tolist(),
        "behaviors": rng.integers(1, vocab["behaviors"], k).tolist(),
        "ts": (t0 + np.cumsum(rng.uniform(1, 600, k))).tolist(),
        "numeric": rng.normal(0, 3, (k, 1)).tolist(),
    }


def _summary(ms: list[float]) -> dict[str, float]:
    values = np.asarray(ms)
    return {
        "n": int(values.size),
        "p50_ms": round(float(np.percentile(values, 50)), 3),
        "p99_ms": round(float(np.percentile(values, 99)), 3),
        "mean_ms": round(float(values.mean()), 3),
        "requests_per_s": round(1e3 / float(values.mean()), 2),
    }


def bench_encoder(encoder: str, args: argparse.Namespace, workdir: Path) -> list[dict]:
    vocab = _write_model(encoder, workdir / f"{encoder}.pt2")
    proc, port = _start(workdir / f"{encoder}.pt2", args.threads)
    client = Client(port)
    rng = np.random.default_rng(0)
    records: list[dict] = []
    try:
        bar = progress(total=len(args.lengths) * len(args.candidates), desc=encoder, unit="cell")
        for user, length in enumerate(args.lengths, start=1):
            now = 1.9e9
            for lo in range(0, length, 10_000):
                k = min(10_000, length - lo)
                _, status, answer = client.post(
                    "/append", {"user": user, **_events(rng, k, 1.6e9 + lo * 600.0, vocab)}
                )
                if status != 200:
                    raise RuntimeError(f"append failed: {answer}")
            for c in args.candidates:
                body = {
                    "user": user,
                    "items": rng.integers(1, vocab["items"], c).tolist(),
                    "categories": rng.integers(1, vocab["categories"], c).tolist(),
                }
                cold, warm = [], []
                for _ in range(args.cold):
                    now += 2 * MAX_STATE_AGE  # the cached state is too old: rebuilt
                    ms, status, answer = client.post("/rank", {**body, "now": now})
                    if status != 200 or answer["state"] != "cold":
                        raise RuntimeError(f"cold rank: {status} {answer}")
                    cold.append(ms)
                for _ in range(args.warm):
                    ms, status, answer = client.post("/rank", {**body, "now": now})
                    if status != 200 or answer["state"] != "warm":
                        raise RuntimeError(f"warm rank: {status} {answer}")
                    warm.append(ms)
                for mode, ms_list in (("cold", cold), ("warm", warm)):
                    records.append(
                        {
                            "encoder": encoder,
                            "kind": "rank",
                            "mode": mode,
                            "L": length,
                            "C": c,
                            **_summary(ms_list),
                        }
                    )
                bar.update(1)
                bar.set_postfix(L=length, C=c, warm_p99=records[-1]["p99_ms"])
            appends = []
            for j in range(args.warm):
                event = _events(rng, 1, now - 60.0 + j * 1e-3, vocab)
                ms, status, answer = client.post("/append", {"user": user, **event})
                if status != 200 or answer["state"] != "updated":
                    raise RuntimeError(f"append: {status} {answer}")
                appends.append(ms)
            records.append(
                {
                    "encoder": encoder,
                    "kind": "append",
                    "mode": "warm",
                    "L": length,
                    "C": None,
                    **_summary(appends),
                }
            )
        bar.close()
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=30)
    return records


def targets(records: list[dict]) -> dict[str, Any]:
    """Issue 20's targets, read off the records (None where the cell was not run)."""

    def cell(mode: str, length: int, c: int) -> dict | None:
        return next(
            (
                r
                for r in records
                if r["encoder"] == "DMGIN"
                and r["kind"] == "rank"
                and r["mode"] == mode
                and r["L"] == length
                and r["C"] == c
            ),
            None,
        )

    warm = cell("warm", 50_000, 1000)
    out: dict[str, Any] = {
        "dmgin_warm_p99_ms_C1000_L50000": warm and warm["p99_ms"],
        "dmgin_warm_p99_target_ms": 20.0,
    }
    for c in (100, 1000):
        w, k = cell("warm", 10_000, c), cell("cold", 10_000, c)
        out[f"dmgin_warm_over_cold_p50_C{c}_L10000"] = (
            round(w["p50_ms"] / k["p50_ms"], 4) if w and k else None
        )
    out["warm_over_cold_target"] = 0.2
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--encoders", nargs="+", default=["DMGIN", "SIMHard"], choices=["DMGIN", "SIMHard", "ETA"]
    )
    parser.add_argument("--lengths", nargs="+", type=int, default=[1000, 10_000, 50_000])
    parser.add_argument("--candidates", nargs="+", type=int, default=[100, 1000])
    parser.add_argument("--warm", type=int, default=200, help="warm requests per cell")
    parser.add_argument("--cold", type=int, default=20, help="cold requests per cell")
    parser.add_argument("--threads", type=int, default=1, help="the service's torch threads")
    parser.add_argument("--out", default=str(RESULTS_DIR / "serving.json"))
    args = parse_cli(parser, argv)
    if min(args.lengths + args.candidates) < 1 or args.warm < 1 or args.cold < 1:
        parser.error("--lengths, --candidates, --warm and --cold must be >= 1")
    records: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="lifelongrec-serving-") as tmp:
        for encoder in args.encoders:
            records += bench_encoder(encoder, args, Path(tmp))
    result = {
        "environment": environment(),
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "records": records,
        "targets": targets(records),
    }
    write_json_atomic(Path(args.out), result)
    for r in records:
        print(json.dumps(r))
    print(json.dumps(result["targets"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
