# ruff: noqa: UP006, UP007, UP035, UP045
# torchx parses these signatures itself: its linter accepts only typing.Optional/List/Dict
# (not `str | None` or `list[str]`), and the CLI reads the annotations at runtime, so this file
# must not use `from __future__ import annotations` either.
"""torchx components for lifelongrec: prepare data, build content, train, benchmark.

Run from the repository root (paths in configs are relative to it)::

    export TORCHXCONFIG=recipes/.torchxconfig    # torchx only reads ./.torchxconfig otherwise
    torchx run -s local_cwd recipes/components.py:train \\
        --config recipes/configs/ml1m_dmgin.yaml --nproc 2 train.epochs=1
    torchx run -s local_cwd recipes/components.py:train --help    # the Args: sections below

Every component is a thin ``torchx.components.dist.ddp`` AppDef (one role, ``torchrun`` inside),
so the same command runs on another scheduler by changing ``-s`` (``slurm``, ``kubernetes``)
and its ``-cfg``. On CUDA hosts the trainer picks NCCL by itself (``train.device=auto``); give
``--gpu`` and ``--nproc`` equal to the GPUs per node.

Note: torchx runs this file with ``exec`` inside its own finder module, so ``__file__`` is not
this file and module-level names must not shadow that module's (e.g. ``validate``, ``logger``).
"""

from typing import Dict, List, Optional

import torchx
import torchx.specs as specs
from torchx.components.dist import ddp

# `--resume` is a bare flag of pipelines.train: a lookup instead of a branch in the component.
_RESUME_ARGS: Dict[bool, List[str]] = {False: [], True: ["--resume"]}


def prepare(
    *args: str,
    out: str,
    image: str = torchx.IMAGE,
    cpu: int = 2,
    memMB: int = 8192,
    h: Optional[str] = None,
    env: Optional[Dict[str, str]] = None,
    mounts: Optional[List[str]] = None,
) -> specs.AppDef:
    """Prepare a dataset directory (``python -m pipelines.prepare --out OUT ARGS...``).

    Example: ``torchx run -s local_cwd recipes/components.py:prepare --out data/ml1m --
    --dataset movielens-1m-u2999`` (``-- --synthetic --users 200`` and ``-- --events ...``
    work the same way; see ``python -m pipelines.prepare --help``).

    Args:
        args: flags of pipelines.prepare after "--", e.g. -- --dataset movielens-1m-u2999
        out: output directory of the prepared dataset (written atomically)
        image: container image (kubernetes/docker); ignored by local_cwd and slurm
        cpu: CPUs of the one replica
        memMB: memory of the one replica in MB
        h: a registered named resource (overrides cpu and memMB)
        env: extra environment variables, e.g. LIFELONGREC_DATA=/shared/data
        mounts: mounts for container schedulers, e.g. type=volume,src=PVC,dst=/work/data
    """
    return ddp(
        "--out",
        out,
        *args,
        m="pipelines.prepare",
        name="/prepare",
        image=image,
        cpu=cpu,
        memMB=memMB,
        h=h,
        j="1x1",
        env=env,
        mounts=mounts,
    )


def content(
    dataset: str,
    embed_args: str = "",
    csft_args: str = "",
    cluster_args: str = "--k 256",
    image: str = torchx.IMAGE,
    cpu: int = 2,
    gpu: int = 0,
    memMB: int = 8192,
    h: Optional[str] = None,
    env: Optional[Dict[str, str]] = None,
    mounts: Optional[List[str]] = None,
) -> specs.AppDef:
    """Item content embeddings, C-SFT alignment and K-means groups (python -m pipelines.content).

    Runs embed -> csft -> cluster over one prepared dataset, writing DATASET/content/; each
    ``*_args`` string is passed to that step unchanged (see docs/content.md). Write a value
    that is a single flag with "=": ``--csft_args=--baskets``.

    Args:
        dataset: prepared dataset directory
        embed_args: flags of pipelines.content.embed, e.g. "--fields title,genres"
        csft_args: flags of pipelines.content.csft, e.g. "--epochs 3 --window 3"
        cluster_args: flags of pipelines.content.cluster, e.g. "--target-ratio 0.3"
        image: container image (kubernetes/docker); ignored by local_cwd and slurm
        cpu: CPUs of the one replica
        gpu: GPUs of the one replica
        memMB: memory of the one replica in MB
        h: a registered named resource (overrides cpu, gpu and memMB)
        env: extra environment variables
        mounts: mounts for container schedulers, e.g. type=volume,src=PVC,dst=/work/data
    """
    return ddp(
        "--dataset",
        dataset,
        f"--embed={embed_args}",
        f"--csft={csft_args}",
        f"--cluster={cluster_args}",
        m="pipelines.content",
        name="/content",
        image=image,
        cpu=cpu,
        gpu=gpu,
        memMB=memMB,
        h=h,
        j="1x1",
        env=env,
        mounts=mounts,
    )


def train(
    *overrides: str,
    config: str,
    nproc: int = 1,
    nnodes: int = 1,
    resume: bool = False,
    name: str = "/train",
    image: str = torchx.IMAGE,
    cpu: int = 4,
    gpu: int = 0,
    memMB: int = 16384,
    h: Optional[str] = None,
    env: Optional[Dict[str, str]] = None,
    mounts: Optional[List[str]] = None,
    max_retries: int = 0,
    rdzv_port: int = 29500,
) -> specs.AppDef:
    """Train and evaluate a CTR model on sharded TorchRec tables (python -m pipelines.train).

    nnodes x nproc ranks under torchrun; gloo on CPU, nccl when CUDA is present. Outputs
    (metrics.json, metrics.jsonl, TensorBoard, checkpoints) go to the config's train.output_dir.
    Example: ``torchx run -s local_cwd recipes/components.py:train
    --config recipes/configs/ml1m_dmgin.yaml --nproc 2 train.epochs=1``

    Args:
        overrides: optional key=value config overrides after all flags, e.g. train.epochs=1
        config: YAML experiment config, e.g. recipes/configs/ml1m_dmgin.yaml
        nproc: worker processes per node (GPUs per node on CUDA hosts)
        nnodes: number of nodes (replicas); world size = nnodes * nproc
        resume: --resume True continues from the latest checkpoint in train.output_dir
        name: job name, {experiment}/{run} (torchx naming)
        image: container image (kubernetes/docker); ignored by local_cwd and slurm
        cpu: CPUs per node
        gpu: GPUs per node
        memMB: memory per node in MB
        h: a registered named resource (overrides cpu, gpu and memMB)
        env: extra environment variables, e.g. OMP_NUM_THREADS=4
        mounts: mounts for container schedulers (data and train.output_dir must be shared)
        max_retries: scheduler retries of a failed job (with --resume True they continue)
        rdzv_port: rendezvous port on the first node (multi-node only)
    """
    return ddp(
        "--config",
        config,
        *overrides,
        *_RESUME_ARGS[resume],
        m="pipelines.train",
        name=name,
        image=image,
        cpu=cpu,
        gpu=gpu,
        memMB=memMB,
        h=h,
        j=f"{nnodes}x{nproc}",
        env=env,
        mounts=mounts,
        max_retries=max_retries,
        rdzv_port=rdzv_port,
    )


def benchmark(
    *args: str,
    module: str = "benchmarks.quality",
    image: str = torchx.IMAGE,
    cpu: int = 2,
    gpu: int = 0,
    memMB: int = 16384,
    h: Optional[str] = None,
    env: Optional[Dict[str, str]] = None,
    mounts: Optional[List[str]] = None,
) -> specs.AppDef:
    """Run a benchmark module as one process (python -m MODULE ARGS...).

    Example: ``torchx run -s local_cwd recipes/components.py:benchmark --module benchmarks.cost``

    Args:
        args: arguments of the benchmark module, after "--" when they start with "-"
        module: benchmarks.quality, benchmarks.cost or benchmarks.content
        image: container image (kubernetes/docker); ignored by local_cwd and slurm
        cpu: CPUs of the one replica
        gpu: GPUs of the one replica
        memMB: memory of the one replica in MB
        h: a registered named resource (overrides cpu, gpu and memMB)
        env: extra environment variables
        mounts: mounts for container schedulers, e.g. type=volume,src=PVC,dst=/work/data
    """
    return ddp(
        *args,
        m=module,
        name="/benchmark",
        image=image,
        cpu=cpu,
        gpu=gpu,
        memMB=memMB,
        h=h,
        j="1x1",
        env=env,
        mounts=mounts,
    )
