"""`python -m benchmarks.quality --dataset PATH`: a user's own prepared directory runs the same
protocol (generic recipes), `--max-len` writes its own results file, models that need item text
are left out with a reason on a log without text (an error when named explicitly), and
`--budget-minutes` starts no run once spent and lists what it did not run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.quality.data import DATASETS, resolve_dataset
from benchmarks.quality.run import main, models_for
from benchmarks.quality.variants import VARIANTS
from pipelines.data.synthetic import SyntheticConfig, write_synthetic_dataset

TINY = {
    "users": 30,
    "mean_length": 60,
    "max_length": 120,
    "items": 200,
    "groups": 8,
    "categories": 16,
    "samples_per_user": 16,
    "seed": 3,
}
FAST = ("loader.batch_size=64", "train.max_steps=3", "train.eval_batch_size=256")


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("own") / "my_log"
    write_synthetic_dataset(root, SyntheticConfig(**TINY))
    return root


def _argv(base: Path, *extra: str) -> list[str]:
    return [
        "--runs-dir", str(base / "runs"),
        "--results-dir", str(base / "results"),
        "--data-dir", str(base / "data"),
        "--seeds", "0", "--lrs", "0.002", "--epochs", "1",
        *[arg for kv in FAST for arg in ("--set", kv)],
        *extra,
    ]  # fmt: skip


def test_resolve_dataset_names_paths_and_errors(own: Path, tmp_path: Path) -> None:
    assert resolve_dataset("ml-1m-u2999") is DATASETS["ml-1m-u2999"]
    spec = resolve_dataset(str(own))
    assert spec.path == own.resolve() and spec.name == "my_log" and not spec.synthetic
    assert spec.recipe_prefix == "ml1m"
    with pytest.raises(SystemExit, match="manifest.json does not exist"):
        resolve_dataset(str(tmp_path / "nothing_here"))


def test_models_without_item_text_are_left_out_or_refused(own: Path) -> None:
    spec = resolve_dataset(str(own))
    assert not json.loads((own / "manifest.json").read_text()).get("text_fields")
    kept, left = models_for(spec, own, list(VARIANTS), explicit=False)
    needs = {m for m, v in VARIANTS.items() if v.groups or v.content}
    assert needs and set(left) == needs and set(kept) == set(VARIANTS) - needs
    assert all("no item text" in reason for reason in left.values())
    with pytest.raises(SystemExit, match="DMGIN cannot run"):
        models_for(spec, own, ["DIN", "DMGIN"], explicit=True)
    # the synthetic smoke data stands in groups and content: nothing is left out there
    smoke = DATASETS["synthetic-smoke"]
    assert models_for(smoke, own, list(VARIANTS), explicit=False) == (list(VARIANTS), {})


def test_own_dataset_trains_with_the_protocol(own: Path, tmp_path: Path) -> None:
    code = main(_argv(tmp_path, "--dataset", str(own), "--models", "DIN", "--max-len", "40"))
    assert code == 0
    result = json.loads((tmp_path / "results" / "quality_my_log-L40.json").read_text())
    assert result["dataset"] == "my_log-L40"
    (record,) = result["runs"]["DIN"].values()
    assert record["status"] == "ok", record.get("log_tail")
    assert 0.0 <= record["test"]["auc"] <= 1.0 and record["steps"] == 3
    assert result["settings"]["shared"]["loader.max_len"] == 40
    assert "loader.batch_size=64" in result["settings"]["extra_overrides"]
    assert result["floor"]["test"]["auc"] is not None
    assert result["summary"][0]["model"] == "DIN"


def test_spent_budget_starts_nothing_and_lists_the_runs(
    own: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        _argv(tmp_path, "--dataset", str(own), "--models", "DIN,ETA", "--budget-minutes", "1e-9")
    )
    assert code == 0
    result = json.loads((tmp_path / "results" / "quality_my_log.json").read_text())
    last = result["last_invocation"]
    assert last["trained"] == 0 and last["not_run_budget"] == 2
    assert last["not_run_over_budget"] == ["DIN lr0.002_s0", "ETA lr0.002_s0"]
    assert not result["runs"]
    assert "2 run(s) not started" in capsys.readouterr().out
