"""A fixed sample of source mutants that the tests must kill (issue #17).

Each mutant is one exact text replacement in one file of ``components/``. The test copies
``components/``, ``pipelines/``, the test folders and ``pyproject.toml`` into a temporary folder,
applies one mutant there (never in the checkout), and runs the named tests in a subprocess from
that folder (``python -m pytest -x``, so the copy is what gets imported; checked once). A mutant
is killed when those tests fail (exit status 1: a failing test, not a collection error). The
same tests must pass on the unmutated copy, and every mutant's old text must still occur
exactly once in the real source, so that a refactor cannot silently turn a mutant stale.

Run alone: ``python -m pytest -q tests/mutation -m slow`` (about 2-3 minutes of one CPU core).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
COPIED = ("components", "pipelines", "tests/conftest.py", "tests/layers", "tests/encoders")
HSTU = "components/layers/hstu.py"
DMGIN = "components/encoders/dmgin.py"
MEANING_DMGIN = "tests/encoders/test_meaning_dmgin.py"
MEANING_SIM = "tests/encoders/test_meaning_sim.py"
MEANING_DIN = "tests/encoders/test_meaning_din_ciubm.py"
MEANING_TWIN = "tests/encoders/test_meaning_twin_sdim.py"
TEST_HSTU = "tests/layers/test_hstu.py"


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]  # pytest node ids (or files) that must fail on the mutant


MUTANTS = [
    # (a)-(f): the bugs of issue #17 that the earlier tests let through
    Mutant(
        "hstu_mask_reversed",
        HSTU,
        "dtype=torch.bool).tril()",
        "dtype=torch.bool).triu()",
        (
            f"{TEST_HSTU}::test_one_training_step_moves_the_time_and_position_tables",
            f"{MEANING_DMGIN}::test_hstu_is_causal_across_groups",
        ),
    ),
    Mutant(
        "dmgin_group_attention_ignores_group_mask",
        DMGIN,
        "self.group_attention(candidates.embeddings, state.groups, state.group_mask)",
        "self.group_attention(candidates.embeddings, state.groups, state.group_mask | True)",
        (f"{MEANING_DMGIN}::test_forward_equals_the_naive_reference[full]",),
    ),
    Mutant(
        "dmgin_intra_group_first_slot_not_mean",
        DMGIN,
        "encoded = masked_mean(self.intra(slots, inner_mask), inner_mask)",
        "encoded = self.intra(slots, inner_mask)[:, 0]",
        (f"{MEANING_DMGIN}::test_forward_equals_the_naive_reference[full]",),
    ),
    Mutant(
        "dmgin_hstu_time_gaps_zeroed",
        DMGIN,
        "times = -last_age * grouped.group_mask",
        "times = 0.0 * last_age * grouped.group_mask",
        (f"{MEANING_DMGIN}::test_forward_equals_the_naive_reference[full]",),
    ),
    Mutant(
        "eta_keeps_the_farthest",
        "components/ops/retrieval.py",
        "return topk_by_score(-distance.to(torch.float32), offsets, k)",
        "return topk_by_score(distance.to(torch.float32), offsets, k)",
        (f"{MEANING_SIM}::test_eta_keeps_the_nearest_fingerprints_not_the_farthest",),
    ),
    Mutant(
        "dmgin_output_times_zero",
        DMGIN,
        "return self.score_candidates(state, candidates).squeeze(1)",
        "return self.score_candidates(state, candidates).squeeze(1) * 0",
        (
            "tests/encoders/test_meaning_ctr.py::test_the_encoder_beats_its_zeroed_output_on_a_task"
            "_that_needs_the_history[DMGIN]",
        ),
    ),
    # more: each a plausible slip that only a test of meaning sees
    Mutant(
        "hstu_gap_zeroed_in_the_bias",
        HSTU,
        "gap = (timestamps.unsqueeze(2) - timestamps.unsqueeze(1)).abs() / 60.0",
        "gap = 0.0 * (timestamps.unsqueeze(2) - timestamps.unsqueeze(1)).abs() / 60.0",
        (f"{TEST_HSTU}::test_time_gaps_and_positions_both_matter",),
    ),
    Mutant(
        "hstu_position_offsets_mirrored",
        HSTU,
        "offset = (idx.view(1, -1) - idx.view(-1, 1))",
        "offset = (idx.view(-1, 1) - idx.view(1, -1))",
        (f"{TEST_HSTU}::test_bias_equals_a_naive_table_lookup",),
    ),
    Mutant(
        "hstu_not_divided_by_the_number_of_keys",
        HSTU,
        "attn = F.silu(scores) * allowed.to(x.dtype) / keys",
        "attn = F.silu(scores) * allowed.to(x.dtype)",
        (f"{TEST_HSTU}::test_layer_equals_a_naive_loop_on_a_fixed_batch",),
    ),
    Mutant(
        "target_attention_ignores_its_mask",
        "components/layers/target_attention.py",
        'logits = logits.masked_fill(~valid, float("-inf"))',
        "logits = logits",
        (f"{MEANING_SIM}::test_encoder_equals_brute_force_search_then_naive_attention",),
    ),
    Mutant(
        "sim_time_interval_ignored",
        "components/encoders/sim.py",
        "times = self.time(age)",
        "times = self.time(age * 0)",
        (f"{MEANING_SIM}::test_hard_search_window",),
    ),
    Mutant(
        "sim_soft_keeps_the_lowest_scores",
        "components/encoders/sim.py",
        "index, mask = topk_by_score(scores.detach(), history.offsets, self.config.top_k)",
        "index, mask = topk_by_score(-scores.detach(), history.offsets, self.config.top_k)",
        (f"{MEANING_SIM}::test_encoder_equals_brute_force_search_then_naive_attention",),
    ),
    Mutant(
        "din_reads_the_oldest",
        "components/encoders/din.py",
        "history.embeddings, history.offsets, self.config.max_len\n",
        'history.embeddings, history.offsets, self.config.max_len, keep="first"\n',
        (f"{MEANING_DIN}::test_din_equals_the_naive_sum_on_a_fixed_batch",),
    ),
    Mutant(
        "ciubm_drops_the_product_term",
        "components/encoders/ciubm.py",
        "+ g[2] * id_logits * similarity",
        "+ 0 * id_logits * similarity",
        (f"{MEANING_DIN}::test_ciubm_equals_the_naive_reference[default]",),
    ),
    Mutant(
        "dmgin_group_zero_is_a_group",
        DMGIN,
        "skip_group=NO_GROUP,",
        "skip_group=None,",
        (f"{MEANING_DMGIN}::test_group_zero_is_no_group",),
    ),
    Mutant(
        "head_clamps_items_past_the_group_table",
        "components/head.py",
        "if low < 0 or high >= size:",
        "if False:",
        ("tests/encoders/test_no_silent_remap.py::test_item_ids_past_the_group_table_raise",),
    ),
    Mutant(
        "grouping_fraction_of_history_dropped",
        "components/ops/grouping.py",
        "(count / lengths[kept_sample].to(torch.float32)).unsqueeze(1),",
        "(count * 0 / lengths[kept_sample].to(torch.float32)).unsqueeze(1),",
        (f"{MEANING_DMGIN}::test_forward_equals_the_naive_reference[full]",),
    ),
    # the encoders of issue #19
    Mutant(
        "twin_gsu_reads_the_first_head_only",
        "components/encoders/twin.py",
        "scores = self.logits(queries[segment], keys, bias).mean(dim=1)",
        "scores = self.logits(queries[segment], keys, bias)[:, 0]",
        (f"{MEANING_TWIN}::test_twin_gsu_keeps_the_rows_the_esu_weighs_most",),
    ),
    Mutant(
        "sdim_bucket_sums_not_normalised",
        "components/encoders/sdim.py",
        "normalised = collided / norm.clamp_min(1e-12)",
        "normalised = collided",
        (f"{MEANING_TWIN}::test_sdim_equals_its_brute_force",),
    ),
    Mutant(
        "twin_v2_size_bias_not_logarithmic",
        "components/encoders/twin_v2.py",
        "log_size = torch.log(clusters.sizes.clamp(min=1).to(queries.dtype))",
        "log_size = clusters.sizes.clamp(min=1).to(queries.dtype)",
        ("tests/encoders/test_meaning_twin_v2.py::test_repeating_every_behavior_changes_nothing",),
    ),
]


def _run(root: Path, tests: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider"]
    command += ["--hypothesis-seed=0", "--timeout=300", *tests]
    return subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)


#: the mutants run on this many copies at once (CI has 2 cores; each run is one process)
WORKERS = 2


def _make_copy(root: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", ".hypothesis")
    for part in COPIED:
        source, target = REPO / part, root / part
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=ignore)
        else:
            shutil.copy2(source, target)
    shutil.copy2(REPO / "pyproject.toml", root / "pyproject.toml")
    where = subprocess.run(
        [sys.executable, "-c", "import components, pipelines; print(components.__file__)"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(where.stdout.strip()).is_relative_to(root), where.stdout
    return root


@pytest.fixture(scope="module")
def copies(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    roots = [_make_copy(tmp_path_factory.mktemp(f"mutants{i}")) for i in range(WORKERS)]
    every_test = tuple(dict.fromkeys(t for m in MUTANTS for t in m.tests))
    baseline = _run(roots[0], every_test)
    assert baseline.returncode == 0, "kill tests fail without a mutant:\n" + baseline.stdout[-3000:]
    return roots


def test_every_mutant_names_unique_live_source() -> None:
    assert len({m.name for m in MUTANTS}) == len(MUTANTS)
    for mutant in MUTANTS:
        text = (REPO / mutant.path).read_text()
        assert text.count(mutant.old) == 1, f"{mutant.name}: old text gone stale in {mutant.path}"
        assert mutant.old != mutant.new


def _try(root: Path, mutant: Mutant) -> tuple[int, str]:
    """Apply ``mutant`` to the copy at ``root``, run its kill tests, restore the file."""
    target = root / mutant.path
    original = target.read_text()
    assert original.count(mutant.old) == 1, f"{mutant.name}: stale"
    target.write_text(original.replace(mutant.old, mutant.new))
    try:
        result = _run(root, mutant.tests)
    finally:
        target.write_text(original)
    return result.returncode, result.stdout[-1500:]


@pytest.mark.slow
def test_every_mutant_is_killed(copies: list[Path]) -> None:
    """Each worker takes every WORKERS-th mutant on its own copy; killed = exit status 1."""

    def work(index: int) -> dict[str, tuple[int, str]]:
        return {m.name: _try(copies[index], m) for m in MUTANTS[index::WORKERS]}

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        results = {k: v for part in pool.map(work, range(WORKERS)) for k, v in part.items()}
    assert sorted(results) == sorted(m.name for m in MUTANTS)
    survivors = {
        name: f"exit {code}: {tail}" for name, (code, tail) in results.items() if code != 1
    }
    assert survivors == {}


@pytest.mark.slow
def test_an_equivalent_mutant_is_reported_as_surviving(copies: list[Path]) -> None:
    """The runner can tell a survivor: a docstring edit changes no behaviour, so its tests pass."""
    line = (
        '"""HSTU layer (Zhai et al., arXiv 2402.17152) with relative position and time-gap bias."""'
    )
    equivalent = Mutant(
        "docstring_only", HSTU, line, line.replace("HSTU layer", "An HSTU layer"),
        (f"{TEST_HSTU}::test_constructor_defaults_and_errors",),
    )  # fmt: skip
    assert _try(copies[0], equivalent)[0] == 0
