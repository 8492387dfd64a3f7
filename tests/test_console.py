"""pipelines.console: known third-party warnings hidden by category + module + message only,
``--verbose`` shows them, progress in a log is plain lines."""

from __future__ import annotations

import argparse
import io
import logging
import warnings
from collections.abc import Iterator

import pytest

from pipelines import console

PLANNER = "torchrec.distributed.planner.planners"
RESERVATION = "HeuristicalStorageReservation is known to cause issues, particularly ..."


def _emit(message: str, category: type[Warning], module: str) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.warn_explicit(message, category, "x.py", 1, module=module)
    return [str(w.message) for w in caught]


@pytest.fixture
def clean_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Restore the warning filters and the loggers' filters the test changes."""
    # setenv (not delenv) so that teardown restores the variable even after quiet_third_party
    # sets it for child processes: a leak would un-quiet every later test's subprocesses
    monkeypatch.setenv(console.VERBOSE_ENV, "")
    loggers = [logging.getLogger(r.logger) for r in console.KNOWN_LOG_RECORDS]
    before = [list(lg.filters) for lg in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        yield
    for lg, filters in zip(loggers, before):
        lg.filters[:] = filters


def test_a_known_warning_is_hidden_only_from_its_module(clean_state: None) -> None:
    assert console.quiet_third_party(False) is True
    assert _emit(RESERVATION, FutureWarning, PLANNER) == []
    # the same text from our own code, another category or another message stays visible
    assert _emit(RESERVATION, FutureWarning, "pipelines.train.trainer") == [RESERVATION]
    assert _emit(RESERVATION, UserWarning, PLANNER) == [RESERVATION]
    assert _emit("something else", FutureWarning, PLANNER) == ["something else"]


def test_verbose_hides_nothing(clean_state: None, monkeypatch: pytest.MonkeyPatch) -> None:
    assert console.verbose_requested() is False
    assert console.quiet_third_party(True) is False
    assert _emit(RESERVATION, FutureWarning, PLANNER) == [RESERVATION]
    assert console.verbose_requested() is True  # passed on to child processes
    monkeypatch.setenv(console.VERBOSE_ENV, "0")
    assert console.verbose_requested() is False
    monkeypatch.setenv(console.VERBOSE_ENV, "1")
    assert console.quiet_third_party() is False


def test_known_log_records_are_dropped_and_others_kept(
    clean_state: None, caplog: pytest.LogCaptureFixture
) -> None:
    known = console.KNOWN_LOG_RECORDS[0]
    console.quiet_third_party(False)
    console.quiet_third_party(False)  # twice: one filter per logger, not two
    logger = logging.getLogger(known.logger)
    assert sum(isinstance(f, console._DropKnown) for f in logger.filters) == 1
    with caplog.at_level(logging.WARNING, logger=known.logger):
        logger.warning(known.prefix + " and the rest of the message")
        logger.warning("a different problem")
    assert [r.getMessage() for r in caplog.records] == ["a different problem"]


def test_parse_cli_adds_verbose(clean_state: None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--x", type=int, default=1)
    args = console.parse_cli(parser, ["--x", "3"])
    assert args.x == 3 and args.verbose is False
    assert _emit(RESERVATION, FutureWarning, PLANNER) == []
    assert console.parse_cli(argparse.ArgumentParser(), ["--verbose"]).verbose is True


def test_progress_in_a_log_is_plain_lines() -> None:
    out = io.StringIO()
    bar = console.progress(total=4, desc="epoch 1", unit="step", stream=out, every_s=1e9)
    for _ in range(4):
        bar.update(1)
    bar.set_postfix(loss="0.25")
    bar.close()
    bar.close()  # closing twice prints once
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert len(lines) == 1  # the interval never elapsed: only the final line
    assert lines[0].startswith("epoch 1: 4/4 step (100%)") and lines[0].endswith("loss=0.25")


def test_progress_lines_follow_the_interval_and_iterables_advance() -> None:
    out = io.StringIO()
    items = list(console.progress(range(3), desc="L", stream=out, every_s=0.0))
    assert items == [0, 1, 2]
    lines = out.getvalue().splitlines()
    assert [line.split(",")[0] for line in lines] == [
        "L: 1/3 it (33%)",
        "L: 2/3 it (67%)",
        "L: 3/3 it (100%)",
        "L: 3/3 it (100%)",
    ]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_on_a_terminal_is_a_tqdm_bar_and_disabled_is_silent() -> None:
    from tqdm import tqdm

    bar = console.progress(total=2, stream=_Terminal())
    assert isinstance(bar, tqdm)
    bar.close()
    out = io.StringIO()
    silent = console.progress(total=2, stream=out, disable=True)
    silent.update(2)
    silent.close()
    assert out.getvalue() == ""


def test_the_verbose_variable_does_not_leak_out_of_these_tests() -> None:
    """Runs after the tests above: their subprocess-facing variable was restored."""
    import os

    assert os.environ.get(console.VERBOSE_ENV, "") in ("", "0")
