"""Training across nodes: 2 nodes x 1 process (two torchrun launchers meeting at a c10d
rendezvous on 127.0.0.1, as two machines would) trains the same model as 1 node x 2 processes,
to 1e-5 in every valid and test metric."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from pipelines.train.distributed import free_port

from .conftest import REPO, write_config


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def _metrics(config: Path) -> dict:
    text = config.read_text()
    output = text.split("output_dir: ")[1].split("\n")[0].strip().strip("'\"")
    return json.loads((Path(output) / "metrics.json").read_text())


def test_two_nodes_match_one_node_with_two_processes(tiny_dataset: Path, tmp_path: Path) -> None:
    single = write_config(tmp_path / "single.yaml", tiny_dataset, tmp_path / "single")
    one_node = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2",
         f"--master-port={free_port()}", "-m", "pipelines.train", "--config", str(single)],
        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert one_node.returncode == 0, one_node.stderr[-3000:]

    multi = write_config(tmp_path / "multi.yaml", tiny_dataset, tmp_path / "multi")
    endpoint = f"127.0.0.1:{free_port()}"
    nodes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nnodes=2",
                "--nproc-per-node=1",
                "--rdzv-backend=c10d",
                f"--rdzv-endpoint={endpoint}",
                "--rdzv-id=multinode-test",
                f"--node-rank={node}",
                "-m",
                "pipelines.train",
                "--config",
                str(multi),
            ],
            cwd=REPO,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for node in range(2)
    ]
    outputs = [node.communicate(timeout=600) for node in nodes]
    for node, (_, err) in zip(nodes, outputs, strict=True):
        assert node.returncode == 0, err[-3000:]

    a, b = _metrics(single), _metrics(multi)
    assert a["world_size"] == b["world_size"] == 2
    assert a["steps"] == b["steps"] > 0
    for split in ("valid", "test"):
        assert a[split]["count"] == b[split]["count"]
        for key in ("auc", "gauc", "logloss"):
            assert abs(a[split][key] - b[split][key]) <= 1e-5, (split, key, a[split], b[split])
