"""Random serving models and logs, and real redis-server / service processes on 127.0.0.1."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from components.model import LifelongCTRModel, ModelConfig, Vocab
from pipelines.serve.model_loader import save_model_file
from pipelines.serve.state.events import Events
from pipelines.serve.state.user_state import ServingModel

VOCAB = Vocab(users=50, items=400, categories=12, behaviors=4, num_numeric=2)
ENCODER_CONFIGS: dict[str, dict[str, Any]] = {
    "DMGIN": {"max_groups": 4, "max_per_group": 3, "hidden_dim": 16, "target_group_max_len": 5},
    "SIMHard": {"top_k": 4},
    "ETA": {"top_k": 4},
    "DIN": {"max_len": 8},
}
#: DMGIN with the candidate item's own statistics (its serving state keeps per-item tables)
ENCODER_CONFIGS["DMGIN+item"] = {**ENCODER_CONFIGS["DMGIN"], "use_target_item_statistics": True}
REPO = Path(__file__).resolve().parents[2]


def model_config(encoder: str) -> ModelConfig:
    return ModelConfig(
        embedding_dim=8,
        behavior_dim=4,
        encoder=encoder.split("+")[0],
        encoder_config=ENCODER_CONFIGS[encoder],
        over_arch=[16],
    )


def random_model(encoder: str, seed: int = 0) -> LifelongCTRModel:
    torch.manual_seed(seed)
    model = LifelongCTRModel(model_config(encoder), VOCAB).eval()
    with torch.no_grad():  # EBC tables start near zero: spread them so that rows differ
        for param in [*model.user_ebc.parameters(), *model.item_ebc.parameters()]:
            param.add_(torch.randn_like(param) * 0.3)
    return model


def serving_model(encoder: str, seed: int = 0) -> ServingModel:
    model = random_model(encoder, seed)
    return ServingModel(model, {"vocab": VOCAB.__dict__, "config": {"model": encoder}})


def write_model(encoder: str, path: Path, seed: int = 0) -> Path:
    return save_model_file(random_model(encoder, seed), model_config(encoder), VOCAB, path)


def random_events(k: int, seed: int, start: float = 1.0e9, categories: int = 6) -> Events:
    """k behaviors of a few categories, one every ~minute from ``start``."""
    rng = np.random.default_rng(seed)
    return Events(
        item=rng.integers(1, VOCAB.items, k),
        category=rng.integers(1, categories, k),
        behavior=rng.integers(1, VOCAB.behaviors, k),
        ts=start + np.cumsum(rng.uniform(1.0, 120.0, k)),
        numeric=rng.normal(0.0, 5.0, (k, VOCAB.num_numeric)).astype(np.float32),
    )


def events_json(user: int, events: Events) -> dict[str, Any]:
    return {
        "user": user,
        "items": events.item.tolist(),
        "categories": events.category.tolist(),
        "behaviors": events.behavior.tolist(),
        "ts": events.ts.tolist(),
        "numeric": events.numeric.tolist(),
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def request(
    port: int,
    method: str,
    path: str,
    body: Any = None,
    raw: bytes | None = None,
    timeout: float = 60.0,
) -> tuple[int, Any]:
    """``(status, JSON body or text)`` of one HTTP request to 127.0.0.1:port."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        text = response.read().decode()
        try:
            return response.status, json.loads(text)
        except json.JSONDecodeError:
            return response.status, text
    finally:
        conn.close()


def _wait(check: Any, what: str, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode}")
        with contextlib.suppress(OSError):
            if check():
                return
        time.sleep(0.05)
    raise TimeoutError(f"{what} did not start within {timeout} s")


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """A throwaway redis-server on a free 127.0.0.1 port (append-only file on, fsync always,
    so a state written is a state kept); yields its URL and stops it."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (scripts/setup.sh installs it)")
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="lifelongrec-redis-")
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            workdir,
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def up() -> bool:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")

        _wait(up, "redis-server", proc)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


def start_service(
    model_path: Path, store: str = "memory://", *extra: str
) -> tuple[subprocess.Popen, int]:
    """``python -m pipelines.serve`` on a free port, once /health answers."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    fd, log_name = tempfile.mkstemp(prefix="lifelongrec-serve-", suffix=".log")
    os.close(fd)
    log = Path(log_name)
    with open(log, "wb") as sink:  # a file, not a pipe nobody reads (it would block the server)
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pipelines.serve",
                "--model",
                str(model_path),
                "--store",
                store,
                "--port",
                str(port),
                *extra,
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )
    try:
        _wait(lambda: request(port, "GET", "/health", timeout=2)[0] == 200, "the service", proc)
    except (RuntimeError, TimeoutError) as err:
        stop(proc)
        raise RuntimeError(f"{err}: {log.read_text()[-2000:]}") from err
    finally:
        log.unlink(missing_ok=True)
    return proc, port


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
