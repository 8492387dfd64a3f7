"""End-to-end trainer runs in real processes: 2 ranks vs 1, kill -9 and resume, 2 -> 1 resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
import torch.distributed.checkpoint as dcp

from pipelines.train.distributed import free_port

from .conftest import write_config

pytestmark = pytest.mark.distributed
REPO = Path(__file__).resolve().parents[2]


def assert_only_own_lines(output: str) -> None:
    """What the trainer printed to a pipe: no third-party warning, no carriage return."""
    assert "\r" not in output
    warnings = [line for line in output.splitlines() if "warning" in line.lower()]
    assert warnings == []


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO)
    env["OMP_NUM_THREADS"] = "1"
    return env


def _train_cmd(config: Path, nproc: int, *extra: str) -> list[str]:
    if nproc == 1:
        return [sys.executable, "-m", "pipelines.train", "--config", str(config), *extra]
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc-per-node={nproc}",
        f"--master-port={free_port()}",
        "-m",
        "pipelines.train",
        "--config",
        str(config),
        *extra,
    ]


def _run(config: Path, nproc: int = 1, *extra: str) -> dict:
    proc = subprocess.run(
        _train_cmd(config, nproc, *extra),
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert_only_own_lines(proc.stdout + proc.stderr)
    output = json.loads(
        Path(config).read_text().split("output_dir: ")[1].split("\n")[0].join(['"', '"'])
    )
    return json.loads((Path(output) / "metrics.json").read_text())


def test_two_ranks_match_one_rank_on_the_same_global_batches(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    one = write_config(
        tmp_path / "one.yaml", tiny_dataset, tmp_path / "one", loader={"batch_size": 64}
    )
    two = write_config(
        tmp_path / "two.yaml", tiny_dataset, tmp_path / "two", loader={"batch_size": 32}
    )
    m1, m2 = _run(one, 1), _run(two, 2)
    assert m2["world_size"] == 2 and m1["world_size"] == 1
    assert m1["steps"] == m2["steps"]
    # Same global batches and the same initial weights. Embedding gradients are summed over ranks
    # (each rank's loss is its own mean) while dense gradients are averaged, so the sparse
    # gradient is 2x the 1-rank one: row-wise Adagrad is invariant to that scale up to its eps,
    # hence agreement to ~1e-4 rather than bit equality.
    for split in ("valid", "test"):
        a, b = m1[split], m2[split]
        assert a["count"] == b["count"]
        assert abs(a["auc"] - b["auc"]) < 2e-3, (a, b)
        assert abs(a["logloss"] - b["logloss"]) < 2e-3, (a, b)
    assert m1["test"]["auc"] > 0.6  # it learned something


def test_kill_and_resume_ends_with_identical_metrics(tiny_dataset: Path, tmp_path: Path) -> None:
    reference = write_config(
        tmp_path / "ref.yaml", tiny_dataset, tmp_path / "ref", train={"epochs": 3}
    )
    expected = _run(reference)
    killed = write_config(
        tmp_path / "kill.yaml",
        tiny_dataset,
        tmp_path / "kill",
        train={"epochs": 3, "checkpoint_every": 7},
    )
    proc = subprocess.Popen(
        _train_cmd(killed, 1),
        cwd=REPO,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    first = tmp_path / "kill" / "checkpoints" / "step_00000014"
    deadline = time.time() + 300
    while not first.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (tmp_path / "kill" / "metrics.json").exists()
    resumed = _run(killed, 1, "--resume")
    for split in ("valid", "test"):
        for key in ("auc", "gauc", "logloss"):
            assert resumed[split][key] == pytest.approx(expected[split][key], abs=1e-6), (
                split,
                key,
            )
    assert resumed["steps"] == expected["steps"]


def test_two_rank_checkpoint_resumes_on_one_rank(tiny_dataset: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml", tiny_dataset, tmp_path / "run", train={"epochs": 1})
    _run(config, 2)
    checkpoint = sorted((tmp_path / "run" / "checkpoints").iterdir())[-1]
    # the saved tables, read back without any process group (DCP reshards to a plain tensor)
    saved = {"model.item_ebc.embedding_bags.item.weight": torch.zeros(401, 8)}
    dcp.load({"model": saved}, checkpoint_id=str(checkpoint))
    table = saved["model.item_ebc.embedding_bags.item.weight"]
    assert table.abs().sum() > 0
    more = write_config(tmp_path / "c2.yaml", tiny_dataset, tmp_path / "run", train={"epochs": 2})
    resumed = _run(more, 1, "--resume")
    assert resumed["world_size"] == 1
    assert resumed["steps"] > 0
    assert resumed["test"]["auc"] > 0.6


def test_lookup_plan_trains_the_same_model_on_two_ranks(tiny_dataset: Path, tmp_path: Path) -> None:
    """DMGIN reads a few rows of each 40-row history; looking up only those (the default)
    must train the model the full lookup trains, through the sharded tables on 2 ranks."""
    model = {
        "encoder": "DMGIN",
        "group_key": "category",
        # 3 x 2 slots + 3 target rows of histories of up to 40: the plan keeps under half
        "encoder_config": {"max_groups": 3, "max_per_group": 2, "target_group_max_len": 3},
    }
    metrics = {}
    for plan in (True, False):
        config = write_config(
            tmp_path / f"plan_{plan}.yaml",
            tiny_dataset,
            tmp_path / f"plan_{plan}",
            model=model,
            train={"lookup_plan": plan, "epochs": 1},
        )
        metrics[plan] = _run(config, 2)
    for split in ("valid", "test"):
        a, b = metrics[True][split], metrics[False][split]
        assert a["count"] == b["count"]
        assert abs(a["auc"] - b["auc"]) < 1e-4, (a, b)
        assert abs(a["logloss"] - b["logloss"]) < 1e-4, (a, b)


def test_two_ranks_on_user_shards_score_every_sample_once(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    """``loader.user_shards``: each rank trains on its own users' shards (its share of the
    events) and evaluation still scores every valid/test sample exactly once."""
    import shutil

    from pipelines.data.shards import write_shards

    sharded = tmp_path / "sharded"
    shutil.copytree(tiny_dataset, sharded)
    write_shards(sharded, 4)
    config = write_config(
        tmp_path / "shards.yaml",
        sharded,
        tmp_path / "shards",
        loader={"batch_size": 32, "user_shards": True},
    )
    metrics = _run(config, 2)
    samples = {
        split: pq.read_metadata(sharded / "samples" / f"{split}.parquet").num_rows
        for split in ("valid", "test")
    }
    assert metrics["world_size"] == 2
    for split in ("valid", "test"):
        assert metrics[split]["count"] == samples[split], (split, metrics[split])
    assert metrics["test"]["auc"] > 0.6
