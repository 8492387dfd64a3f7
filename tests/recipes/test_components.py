"""torchx components (recipes/components.py): torchx validation, the AppDefs the CLI builds,
the content entry point they call, .torchxconfig, and one real 2-rank `torchx run`."""

from __future__ import annotations

import json
import math
import os
import shlex
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest
from torchx.components.component_test_base import ComponentTestCase
from torchx.specs import AppDef
from torchx.specs.builders import materialize_appdef
from torchx.specs.finder import get_component

import pipelines.content.__main__ as content_main
from pipelines.content import cluster, csft, embed

from .conftest import COMPONENTS_FILE, REPO, load_components_module, write_train_config

COMPONENT_NAMES = ("prepare", "content", "train", "benchmark")


def build(name: str, argv: list[str], defaults: dict[str, str] | None = None) -> AppDef:
    """The AppDef `torchx run recipes/components.py:NAME ARGV...` submits."""
    component = get_component(f"{COMPONENTS_FILE}:{name}")
    return materialize_appdef(component.fn, argv, defaults)


def torchrun_command(app: AppDef) -> list[str]:
    """The one role's command line: dist.ddp wraps `torchrun ...` in `bash -c`."""
    (role,) = app.roles
    assert role.entrypoint == "bash" and role.args[0] == "-c", role.args
    command = shlex.split(role.args[1])
    assert command[0] == "torchrun", command
    return command


def option(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def module_and_args(command: list[str]) -> tuple[str, list[str]]:
    """`torchrun ... -m MODULE ARGS...` -> (MODULE, ARGS)."""
    at = command.index("-m")
    return command[at + 1], command[at + 2 :]


class TorchxValidationTest(ComponentTestCase):
    """What `torchx run recipes/components.py:NAME --help` checks: annotations, docstring."""

    def _module(self) -> ModuleType:
        return load_components_module()

    def test_prepare(self) -> None:
        self.validate(self._module(), "prepare")

    def test_content(self) -> None:
        self.validate(self._module(), "content")

    def test_train(self) -> None:
        self.validate(self._module(), "train")

    def test_benchmark(self) -> None:
        self.validate(self._module(), "benchmark")


def test_every_component_returns_a_single_role_appdef(components_module: ModuleType) -> None:
    apps = {
        "prepare": components_module.prepare("--synthetic", out="data/syn"),
        "content": components_module.content("data/syn"),
        "train": components_module.train(config="recipes/configs/ml1m_dmgin.yaml"),
        "benchmark": components_module.benchmark(),
    }
    modules = {name: module_and_args(torchrun_command(app))[0] for name, app in apps.items()}
    assert modules == {
        "prepare": "pipelines.prepare",
        "content": "pipelines.content",
        "train": "pipelines.train",
        "benchmark": "benchmarks.quality",
    }
    for name in COMPONENT_NAMES:
        assert apps[name].roles[0].num_replicas == 1, name


def test_train_appdef_carries_config_overrides_and_topology() -> None:
    app = build(
        "train",
        [
            "--config",
            "recipes/configs/ml1m_dmgin.yaml",
            "--nproc",
            "2",
            "--nnodes",
            "3",
            "--gpu",
            "2",
            "train.epochs=1",
            "model.over_arch=[16,8]",
        ],
    )
    command = torchrun_command(app)
    module, args = module_and_args(command)
    assert module == "pipelines.train"
    # overrides arrive whole: a comma inside a value is not split
    assert args == [
        "--config",
        "recipes/configs/ml1m_dmgin.yaml",
        "train.epochs=1",
        "model.over_arch=[16,8]",
    ]
    assert option(command, "--nproc_per_node") == "2"
    assert option(command, "--nnodes") == "3"
    # multi-node: rendezvous on the first node's host, not a local random port
    assert option(command, "--rdzv_endpoint") != "localhost:0"
    (role,) = app.roles
    assert role.num_replicas == 3 and role.resource.gpu == 2


def test_train_resume_flag_only_when_asked() -> None:
    fresh = module_and_args(torchrun_command(build("train", ["--config", "c.yaml"])))[1]
    resumed = build("train", ["--config", "c.yaml", "--resume", "True", "train.epochs=3"])
    assert fresh == ["--config", "c.yaml"]
    assert module_and_args(torchrun_command(resumed))[1] == [
        "--config",
        "c.yaml",
        "train.epochs=3",
        "--resume",
    ]
    single = torchrun_command(build("train", ["--config", "c.yaml"]))
    assert option(single, "--nproc_per_node") == "1"
    assert option(single, "--rdzv_endpoint") == "localhost:0"


def test_prepare_and_benchmark_pass_their_flags_through() -> None:
    prepare = torchrun_command(
        build("prepare", ["--out", "data/syn", "--", "--synthetic", "--users", "10"])
    )
    assert module_and_args(prepare) == (
        "pipelines.prepare",
        ["--out", "data/syn", "--synthetic", "--users", "10"],
    )
    assert option(prepare, "--nproc_per_node") == "1"
    bench = torchrun_command(
        build("benchmark", ["--module", "benchmarks.cost", "--", "--lengths", "1000,10000"])
    )
    assert module_and_args(bench) == ("benchmarks.cost", ["--lengths", "1000,10000"])
    assert option(bench, "--nproc_per_node") == "1"


def test_content_appdef_runs_all_three_steps_with_their_flags(
    dataset_copy: Path, tmp_path: Path
) -> None:
    vectors = tmp_path / "vectors.npy"
    np.save(vectors, np.random.default_rng(0).normal(size=(300, 12)).astype(np.float32))
    app = build(
        "content",
        [
            "--dataset",
            str(dataset_copy),
            "--embed_args",
            f"--from-file {vectors}",
            "--csft_args",
            "--max-steps 3 --batch-size 64",
            "--cluster_args",
            "--k 6 --embeddings aligned --no-plot",
        ],
    )
    module, argv = module_and_args(torchrun_command(app))
    assert module == "pipelines.content"
    # run exactly the argv the job would run, in this process
    assert content_main.main(argv) == 0
    out = dataset_copy / "content"
    report = json.loads((out / "cluster_report.json").read_text())
    assert report["k"] == 6 and report["embeddings"] == "aligned"
    assert json.loads((out / "csft_report.json").read_text())["steps"] == 3
    groups = pd.read_parquet(out / "groups.parquet")
    assert len(groups) == 300 and groups["group"].between(1, 6).all()


def test_content_stops_at_the_first_failing_step(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, list[str]]] = []

    def fake(name: str, code: int):
        def step(argv: list[str] | None) -> int:
            calls.append((name, list(argv or [])))
            return code

        return step

    monkeypatch.setattr(embed, "main", fake("embed", 0))
    monkeypatch.setattr(csft, "main", fake("csft", 3))
    monkeypatch.setattr(cluster, "main", fake("cluster", 0))
    assert content_main.main(["--dataset", "d", "--csft=--epochs 1"]) == 3
    assert calls == [("embed", ["--dataset", "d"]), ("csft", ["--dataset", "d", "--epochs", "1"])]


def _cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(REPO)
    env["OMP_NUM_THREADS"] = "1"
    env.pop("TORCHXCONFIG", None)
    return env


def _torchx(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.executable).parent / "torchx"), *args],
        cwd=REPO,
        env=env or _cli_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_torchxconfig_sets_scheduler_and_train_defaults() -> None:
    env = _cli_env()
    env["TORCHXCONFIG"] = "recipes/.torchxconfig"
    exact = _torchx("run", "--dryrun", "recipes/components.py:train", "--config", "c.yaml", env=env)
    assert exact.returncode == 0, exact.stderr[-3000:]
    assert "local_cwd://" in exact.stdout  # [cli:run] scheduler
    assert "--nproc_per_node 2" in exact.stdout  # [component:recipes/components.py:train]
    assert "runs/torchx" in exact.stdout  # [local_cwd] log_dir
    # torchx matches component defaults by the exact name: ./recipes/... gets none
    other = _torchx("run", "--dryrun", "./recipes/components.py:train", "--config", "c", env=env)
    assert other.returncode == 0, other.stderr[-3000:]
    assert "--nproc_per_node 1" in other.stdout


@pytest.mark.distributed
def test_torchx_local_cwd_trains_with_two_ranks_and_resumes(
    small_dataset: Path, tmp_path: Path
) -> None:
    output = tmp_path / "run"
    config = write_train_config(tmp_path / "tiny.yaml", small_dataset, output)
    logs = tmp_path / "torchx_logs"
    launch = ["run", "-s", "local_cwd", "-cfg", f"log_dir={logs}", "recipes/components.py:train"]
    proc = _torchx(*launch, "--config", str(config), "--nproc", "2", "train.epochs=1")
    assert proc.returncode == 0, proc.stderr[-4000:]
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    for split in ("valid", "test"):
        assert math.isfinite(metrics[split]["auc"]) and 0.0 <= metrics[split]["auc"] <= 1.0
    # the override train.epochs=1 reached the trainer (the config file says 2)
    assert _valid_epochs(output) == [0]
    # both ranks ran under torchx: one log per local rank in the job's log directory
    rank_logs = {p.parent.name for p in logs.rglob("stdout.log") if "attempt" in str(p)}
    assert rank_logs == {"0", "1"}, sorted(str(p) for p in logs.rglob("*.log"))

    args = ["--config", str(config), "--nproc", "2", "--resume", "True", "train.epochs=2"]
    proc = _torchx(*launch, *args)
    assert proc.returncode == 0, proc.stderr[-4000:]
    resumed = json.loads((output / "metrics.json").read_text())
    # continued from the epoch-0 checkpoint (metrics.jsonl is appended to): a fresh start
    # would have evaluated epoch 0 a second time
    assert _valid_epochs(output) == [0, 1]
    assert resumed["world_size"] == 2 and resumed["steps"] == 2 * metrics["steps"]


def _valid_epochs(output: Path) -> list[int]:
    lines = (output / "metrics.jsonl").read_text().splitlines()
    return [r["epoch"] for r in map(json.loads, lines) if r["split"] == "valid"]


@pytest.mark.distributed
def test_torchx_reports_a_failed_job(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("data: {dataset: nowhere}\ntrain: {epochs: -1}\n")
    proc = _torchx("run", "-s", "local_cwd", "recipes/components.py:train", "--config", str(config))
    assert proc.returncode != 0
    assert "train.epochs" in proc.stderr  # the config error, shown by torchx
