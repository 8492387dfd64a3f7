"""Export a trained checkpoint and score with it: the predictions are the trainer's own.

The trainer, ``pipelines.export`` and ``pipelines.score`` run as real processes (1 and 2 ranks),
as a user would run them; the plain-tensor scorer, the torch.export artifact path and the error
paths are checked in-process on small random models.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from components.encoders.base import History, Query, SequenceEncoder
from components.model import LifelongCTRModel, ModelConfig
from pipelines.data.loader import LoaderConfig, SampleLoader
from pipelines.data.prepared import PreparedDataset
from pipelines.serve import export as export_mod
from pipelines.serve import score as score_mod
from pipelines.serve import scorer as scorer_mod
from pipelines.train.checkpoint import TrainerState, save_checkpoint
from pipelines.train.config import ExperimentConfig, to_dict
from pipelines.train.distributed import free_port
from pipelines.train.model_setup import build_vocab
from pipelines.train.model_wrapper import TrainWrapper

from .conftest import write_config

REPO = Path(__file__).resolve().parents[2]
KEY = ["user", "item", "ts", "label"]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO)
    env["OMP_NUM_THREADS"] = "1"
    return env


def _run(args: list[str], nproc: int = 1) -> subprocess.CompletedProcess[str]:
    if nproc > 1:
        launcher = [
            "-m",
            "torch.distributed.run",
            f"--nproc-per-node={nproc}",
            f"--master-port={free_port()}",
        ]
        args = [*launcher, *args]
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )


def _aligned(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows in (user, item, ts, label) order (duplicate samples have identical inputs)."""
    return frame.sort_values(KEY, kind="stable").reset_index(drop=True)


@pytest.mark.distributed
@pytest.mark.parametrize(("encoder", "nproc"), [("DMGIN", 1), ("DMGIN", 2), ("SIMHard", 1)])
def test_exported_model_scores_like_the_trainer(
    tiny_dataset: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    encoder: str,
    nproc: int,
) -> None:
    run = tmp_path / "run"
    config = write_config(
        tmp_path / "c.yaml",
        tiny_dataset,
        run,
        model={"encoder": encoder},
        loader={"batch_size": 64 // nproc},
        train={"epochs": 1, "save_predictions": True, "eval_batch_size": 96 // nproc},
    )
    trained = _run(["-m", "pipelines.train", "--config", str(config)], nproc)
    assert trained.returncode == 0, trained.stderr[-4000:]

    # export and score through their CLIs' main() (a subprocess each would double the runtime)
    model_file = tmp_path / "model" / "scorer.pt2"
    assert export_mod.main(["--checkpoint", str(run), "--out", str(model_file)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["encoder"] == encoder
    assert [p.name for p in model_file.parent.iterdir()] == ["scorer.pt2"]  # no temp file left
    # the bundled encoders export as one program (no state_dict fallback): it was checked
    # against the eager model on batches of two shapes before it was written
    assert summary["kind"] == "torch.export" and summary["export_error"] is None, summary

    out = tmp_path / "predictions.parquet"
    argv = ["--model", str(model_file), "--dataset", str(tiny_dataset), "--split", "test"]
    assert score_mod.main([*argv, "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    ours = _aligned(pd.read_parquet(out))
    theirs = _aligned(pd.read_parquet(run / "predictions_test.parquet"))
    assert list(ours.columns) == ["user", "item", "ts", "label", "prediction"]
    samples = pd.read_parquet(tiny_dataset / "samples" / "test.parquet")
    assert len(ours) == len(theirs) == len(samples)
    pd.testing.assert_frame_equal(ours[KEY], theirs[KEY])
    np.testing.assert_allclose(ours["prediction"], theirs["prediction"], atol=1e-5, rtol=0)
    assert ours["prediction"].std() > 1e-3  # a trained model, not a constant

    expected = json.loads((run / "metrics.json").read_text())["test"]
    for key in ("auc", "gauc", "logloss"):
        assert printed[key] == pytest.approx(expected[key], abs=1e-4), key


# -- in-process: small random models --------------------------------------------------------------


def _plain_model(dataset: Path, encoder: str = "DMGIN") -> LifelongCTRModel:
    torch.manual_seed(0)
    vocab = build_vocab(PreparedDataset.open(dataset), None)
    config = ModelConfig(encoder=encoder, embedding_dim=8, behavior_dim=4, over_arch=[16])
    return LifelongCTRModel(config, vocab).eval()


def _batches(dataset: Path, sizes: tuple[int, ...]) -> list:
    out = []
    for size in sizes:
        loader = SampleLoader(
            dataset, "test", LoaderConfig(batch_size=size, max_len=40, shuffle=False)
        )
        out.append(next(iter(loader)))
    return out


@pytest.mark.parametrize("encoder", ["DMGIN", "SIMHard"])
def test_tensor_scorer_equals_the_batch_forward(tiny_dataset: Path, encoder: str) -> None:
    model = _plain_model(tiny_dataset, encoder)
    scorer = scorer_mod.TensorScorer(model)
    with torch.no_grad():
        for batch in _batches(tiny_dataset, (1, 33)):
            expected = torch.sigmoid(model(batch).logits)
            got = scorer(*scorer_mod.batch_tensors(batch))
            assert got.shape == (batch.batch_size,)
            torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)


class _MeanEncoder(SequenceEncoder):
    """Export-friendly stand-in: candidate-gated mean of the history embeddings."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.output_dim = dim
        self.proj = nn.Linear(dim, dim)

    def forward(self, query: Query, history: History) -> torch.Tensor:
        b, n = history.lengths.shape[0], history.embeddings.shape[0]
        sample = torch.repeat_interleave(torch.arange(b), history.lengths, output_size=n)
        sums = torch.zeros(b, history.embeddings.shape[1]).index_add_(0, sample, history.embeddings)
        mean = sums / history.lengths.clamp_min(1).unsqueeze(1)
        return self.proj(mean) * query.embeddings


def test_torch_export_artifact_round_trip(tiny_dataset: Path, tmp_path: Path) -> None:
    """Once an encoder is exportable, the .pt2 path is taken and scores like eager."""
    model = _plain_model(tiny_dataset, "DIN")
    model.head.encoder = _MeanEncoder(model.head.encoder.output_dim)
    scorer = scorer_mod.TensorScorer(model).eval()
    batches = export_mod.example_batches(tiny_dataset, 40)
    assert len({b.batch_size for b in batches}) == 2  # the check covers another batch size
    program, reason = export_mod.try_torch_export(scorer, batches)
    assert program is not None, reason
    out = tmp_path / "toy.pt2"
    export_mod.write_artifact(out, {"format": export_mod.FORMAT, "version": 1}, model, program)
    loaded, metadata = export_mod.load_scorer(out)
    assert metadata["format"] == export_mod.FORMAT
    assert not isinstance(loaded, scorer_mod.TensorScorer)  # the exported graph, not eager
    with torch.no_grad():
        for batch in _batches(tiny_dataset, (1, 50)):
            inputs = scorer_mod.batch_tensors(batch)
            torch.testing.assert_close(loaded(*inputs), scorer(*inputs), atol=1e-6, rtol=0)


def _checkpoint(tmp_path: Path, dataset: Path) -> Path:
    """A real DCP checkpoint of a random DIN model, written in-process (no trainer)."""
    config = ExperimentConfig()
    config.data.dataset = str(dataset)
    config.model = ModelConfig(encoder="DIN", embedding_dim=8, behavior_dim=4, over_arch=[16])
    config.loader.max_len = 40
    model = _plain_model(dataset, "DIN")
    wrapper = TrainWrapper(model)
    optimizer = torch.optim.SGD(wrapper.parameters(), lr=0.1)
    return save_checkpoint(tmp_path / "run", TrainerState(), wrapper, optimizer, to_dict(config))


def test_bad_checkpoint_paths_fail_clearly(
    tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m.pt2"
    missing = tmp_path / "no_such_checkpoint"
    proc = _run(["-m", "pipelines.export", "--checkpoint", str(missing), "--out", str(out)])
    assert proc.returncode == 1
    assert f"{missing}: checkpoint not found" in proc.stderr
    assert "Traceback" not in proc.stderr

    empty = tmp_path / "empty"
    empty.mkdir()
    assert export_mod.main(["--checkpoint", str(empty), "--out", str(out)]) == 1
    assert f"{empty}: not a complete checkpoint" in capsys.readouterr().err
    checkpoint = _checkpoint(tmp_path, tiny_dataset)
    (checkpoint / "trainer_state.pt").unlink()  # an interrupted copy
    assert export_mod.main(["--checkpoint", str(checkpoint), "--out", str(out)]) == 1
    assert f"{checkpoint}: not a complete checkpoint (trainer_state.pt missing)" in (
        capsys.readouterr().err
    )
    assert not out.exists()


def _score(model: Path, dataset: Path, out: Path) -> int:
    return score_mod.main(["--model", str(model), "--dataset", str(dataset), "--out", str(out)])


def test_mismatched_dataset_and_model_file_fail_clearly(
    tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = _checkpoint(tmp_path, tiny_dataset)
    model_file = tmp_path / "m.pt2"
    args = ["--checkpoint", str(checkpoint), "--out", str(model_file), "--format", "state_dict"]
    assert export_mod.main(args) == 0
    out = tmp_path / "p.parquet"
    # a dataset with another vocabulary: its ids would index the wrong rows
    other = tmp_path / "other"
    other.mkdir()
    manifest = json.loads((tiny_dataset / "manifest.json").read_text())
    manifest["vocab"]["items"] += 1
    (other / "manifest.json").write_text(json.dumps(manifest))
    assert _score(model_file, other, out) == 1
    assert "vocabulary differs from the model's (items" in capsys.readouterr().err
    bogus = tmp_path / "bogus.pt2"
    bogus.write_text("hello")
    assert _score(bogus, tiny_dataset, out) == 1
    assert f"{bogus}: not a lifelongrec model file" in capsys.readouterr().err
    assert not out.exists()
    # the matching pair scores every test sample (with the checkpoint's random weights)
    assert _score(model_file, tiny_dataset, out) == 0
    samples = pd.read_parquet(tiny_dataset / "samples" / "test.parquet")
    assert len(pd.read_parquet(out)) == len(samples)
