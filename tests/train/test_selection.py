"""Model selection on valid: best state kept, early stopping, test scored with the best state,
learning-rate warmup/decay. Unit tests of the rules, then real training processes."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.train.config import ConfigError, load_config
from pipelines.train.schedule import LrSchedule
from pipelines.train.selection import Selection
from pipelines.train.trainer import _chunks

from .conftest import train_process, write_config

REPO = Path(__file__).resolve().parents[2]

values = st.lists(st.one_of(st.floats(0.0, 1.0), st.just(float("nan"))), min_size=1, max_size=30)


@given(values, st.sampled_from(["auc", "gauc", "logloss"]))
def test_the_best_is_the_first_extreme_and_nan_never_counts(seq: list[float], metric: str) -> None:
    sel = Selection(metric)
    flags = [sel.update(v, step=i, epoch=0) for i, v in enumerate(seq)]
    finite = [(v, i) for i, v in enumerate(seq) if not math.isnan(v)]
    if not finite:
        assert sel.best_step == -1 and not any(flags)
        return
    best = max(v for v, _ in finite) if metric != "logloss" else min(v for v, _ in finite)
    assert sel.best_value == best
    assert sel.best_step == next(i for v, i in finite if v == best)  # ties keep the first
    assert flags[sel.best_step] and sel.evals_since_best == len(seq) - 1 - sel.best_step


@given(values, st.integers(1, 5))
def test_patience_stops_after_that_many_evaluations_without_improvement(
    seq: list[float], patience: int
) -> None:
    sel = Selection("auc", patience)
    stopped_at = None
    for i, v in enumerate(seq):
        sel.update(v, step=i, epoch=0)
        if sel.should_stop:
            stopped_at = i
            break
    since = 0
    best = float("nan")
    for i, v in enumerate(seq):  # the rule written out again, naively
        if not math.isnan(v) and (math.isnan(best) or v > best):
            best, since = v, 0
        else:
            since += 1
        if since >= patience:
            assert stopped_at == i
            return
    assert stopped_at is None
    assert not Selection("auc", 0, evals_since_best=100).should_stop  # 0 = never


@settings(max_examples=50)
@given(st.integers(0, 20), st.integers(1, 200), st.sampled_from(["none", "linear", "cosine"]),
       st.floats(0.0, 1.0))  # fmt: skip
def test_lr_schedule_warms_up_then_decays_to_its_floor(
    warmup: int, total: int, decay: str, floor: float
) -> None:
    s = LrSchedule(warmup, decay, total, floor)
    factors = [s.factor(t) for t in range(max(total, warmup) + 5)]
    assert all(0.0 <= f <= 1.0 + 1e-12 for f in factors)
    if warmup:
        assert factors[warmup - 1] == 1.0 and factors[0] == pytest.approx(1.0 / warmup)
        assert all(a < b for a, b in zip(factors[: warmup - 1], factors[1:warmup]))
    after = factors[warmup:]
    assert all(a >= b - 1e-12 for a, b in zip(after, after[1:]))  # never rises after warmup
    if decay == "none" or total <= warmup:
        assert all(f == 1.0 for f in after)
    else:
        assert s.factor(total) == pytest.approx(floor) and s.factor(total + 4) == pytest.approx(
            floor
        )


@given(st.integers(0, 50), st.integers(0, 60), st.integers(0, 9), st.integers(0, 500))
def test_chunks_end_at_multiples_of_eval_every(
    start: int, total: int, every: int, step: int
) -> None:
    sizes = _chunks(start, total, every, step)
    assert sum(sizes) == max(0, total - start) and all(n > 0 for n in sizes)
    if every:
        ends = [step + sum(sizes[: i + 1]) for i in range(len(sizes))]
        assert all(e % every == 0 for e in ends[:-1])


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("train.select_metric=accuracy", "train.select_metric"),
        ("train.test_state=middle", "train.test_state"),
        ("train.patience=-1", "train.patience"),
        ("optim.lr_decay=step", "optim.lr_decay"),
        ("optim.min_lr_factor=2", "optim.min_lr_factor"),
        ("optim.sparse_weight_decay=-0.1", "optim.sparse_weight_decay"),
    ],
)
def test_bad_selection_and_schedule_settings_name_the_key(
    override: str, key: str, tiny_dataset: Path, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "c.yaml", tiny_dataset, tmp_path / "out")
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(config, [override])


@pytest.mark.distributed
def test_test_is_scored_with_the_best_valid_state_and_patience_stops(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    # a high dense rate on a tiny log overfits: valid AUC peaks early and then wanders
    common = {"epochs": 4, "eval_every": 4, "log_every": 100, "patience": 3}
    loader = {"batch_size": 32}
    best_cfg = write_config(tmp_path / "best.yaml", tiny_dataset, tmp_path / "best",
                            train=common, loader=loader, optim={"dense_lr": 0.03})  # fmt: skip
    summary, lines = train_process(best_cfg)
    valid = [r for r in lines if r["split"] == "valid"]
    # the trainer stopped exactly where the rule says, and picked the rule's best
    sel = Selection("auc", common["patience"])
    for i, record in enumerate(valid):
        sel.update(record["auc"], record["step"], record["epoch"])
        if sel.should_stop:
            assert i == len(valid) - 1
    assert summary["early_stopped"] == sel.should_stop
    assert summary["best"]["step"] == sel.best_step and summary["best"]["value"] == sel.best_value
    # metrics.json names the kept state's valid evaluation, not only the last one
    assert summary["best_valid"] == next(r for r in valid if r["step"] == sel.best_step)
    best_step, last_step = sel.best_step, summary["steps"]
    assert best_step < last_step, "the run's last evaluation was its best: no selection to test"
    (test,) = [r for r in lines if r["split"] == "test"]
    assert test["scored_step"] == best_step and summary["test_state"].startswith("best")
    # the same training stopped at the best step and scored there gives the same test metrics
    short = write_config(tmp_path / "short.yaml", tiny_dataset, tmp_path / "short",
                         train={**common, "max_steps": best_step, "patience": 0},
                         loader=loader, optim={"dense_lr": 0.03})  # fmt: skip
    # ... and the same training scored at its last state gives other numbers (both runs at once)
    with ThreadPoolExecutor(max_workers=2) as pool:
        short_run = pool.submit(train_process, short, "train.test_state=last")
        last_run = pool.submit(
            train_process,
            best_cfg,
            "train.test_state=last",
            f"train.output_dir={tmp_path / 'last'}",
        )
        (at_best, _), (last, _) = short_run.result(), last_run.result()
    assert at_best["steps"] == best_step
    for key in ("auc", "gauc", "logloss"):
        assert at_best["test"][key] == pytest.approx(summary["test"][key], abs=1e-6)
    assert last["steps"] == last_step
    assert last["test"]["logloss"] != pytest.approx(summary["test"]["logloss"], abs=1e-6)
