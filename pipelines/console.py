"""What the project's commands print: their own lines, progress a log file can hold.

Two things every entry point (``python -m pipelines.*``, ``python -m benchmarks.*``) uses:

* :func:`quiet_third_party` hides the third-party warnings and log records that are known to
  be harmless here (:data:`KNOWN_WARNINGS`, :data:`KNOWN_LOG_RECORDS`), each matched by
  category (or logger), module and message, never by a global filter; ``--verbose``
  (:func:`add_verbose_flag`) or ``LIFELONGREC_VERBOSE=1`` shows them again. It is called by the
  entry points only: importing the library changes no filter.
* :func:`progress` is a tqdm bar when stderr is a terminal and otherwise one plain line every
  ``every_s`` seconds (and at the end), so a redirected log gets no carriage returns.

Example:
    >>> import io
    >>> out = io.StringIO()
    >>> bar = progress(total=3, desc="epoch 0", unit="step", stream=out, every_s=0.0)
    >>> for _ in range(3):
    ...     bar.update(1)
    >>> bar.set_postfix(loss="0.5")
    >>> bar.close()
    >>> out.getvalue().splitlines()[-1].startswith("epoch 0: 3/3 step (100%)")
    True
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TextIO

VERBOSE_ENV = "LIFELONGREC_VERBOSE"


@dataclass(frozen=True)
class KnownWarning:
    """A warning matched by category, the module that issues it and its message (regexes)."""

    category: type[Warning]
    module: str
    message: str
    why: str


@dataclass(frozen=True)
class KnownLogRecord:
    """A log record matched by logger name and the start of its message."""

    logger: str
    prefix: str
    why: str


KNOWN_WARNINGS: tuple[KnownWarning, ...] = (
    KnownWarning(
        FutureWarning,
        r"torchrec\.distributed\.planner\.planners",
        r"HeuristicalStorageReservation is known to cause issues",
        "the planner's default storage reservation; our tables are tiny beside memory, and "
        "the dry-run estimate it warns about is not used",
    ),
    KnownWarning(
        FutureWarning,
        r"torchrec\.distributed\.model_parallel",
        r"`broadcast_buffers` is deprecated",
        "torchrec 1.8 wraps the dense part in DDP with this argument itself",
    ),
    KnownWarning(
        FutureWarning,
        r"torch\.distributed\.checkpoint\..*",
        r"Please use DTensor instead and we are deprecating ShardedTensor",
        "torchrec 1.8's sharded tables are ShardedTensors; DCP loads them correctly",
    ),
)

KNOWN_LOG_RECORDS: tuple[KnownLogRecord, ...] = (
    KnownLogRecord(
        "torchrec.distributed.planner.types",
        "The topology was constructed directly",
        "the planner gets an explicit Topology (world size, compute device) from us on purpose",
    ),
    KnownLogRecord(
        "torchrec.distributed.planner.storage_reservations",
        "There is a known issue with TorchRec's dense tensor size calculation",
        "about dry runs; we never plan in a dry run",
    ),
    KnownLogRecord(
        "torch.fx._symbolic_trace",
        "is_fx_tracing will return true for both",
        "torch's note on an API torchrec calls; it changes nothing for eager models",
    ),
)


class _DropKnown(logging.Filter):
    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefixes)


def verbose_requested(verbose: bool | None = None) -> bool:
    """``verbose`` if given, else whether ``LIFELONGREC_VERBOSE`` is set to a true value."""
    if verbose is not None:
        return verbose
    return os.environ.get(VERBOSE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def quiet_third_party(verbose: bool | None = None) -> bool:
    """Hide the known harmless third-party warnings and log records; returns whether it did.

    With ``verbose`` (or ``LIFELONGREC_VERBOSE=1``) nothing is hidden. Child processes started
    by the command inherit the environment variable, so ``--verbose`` is passed on by setting
    it (see :func:`add_verbose_flag`).
    """
    if verbose_requested(verbose):
        os.environ[VERBOSE_ENV] = "1"
        return False
    for known in KNOWN_WARNINGS:
        warnings.filterwarnings(
            "ignore", message=known.message, category=known.category, module=known.module
        )
    by_logger: dict[str, list[str]] = {}
    for record in KNOWN_LOG_RECORDS:
        by_logger.setdefault(record.logger, []).append(record.prefix)
    for name, prefixes in by_logger.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropKnown) for f in logger.filters):
            logger.addFilter(_DropKnown(tuple(prefixes)))
    return True


def add_verbose_flag(parser: argparse.ArgumentParser) -> None:
    """Add ``--verbose``: show the third-party warnings this project hides."""
    parser.add_argument(
        "--verbose",
        action="store_true",
        help=f"show third-party warnings known to be harmless (also: {VERBOSE_ENV}=1)",
    )


class PlainProgress:
    """A progress report for logs: one line every ``every_s`` seconds and one at the end."""

    def __init__(
        self,
        total: int | None,
        desc: str,
        unit: str,
        initial: int,
        every_s: float,
        stream: TextIO,
    ) -> None:
        self.total, self.desc, self.unit, self.n = total, desc, unit, initial
        self.every_s, self.stream = every_s, stream
        self.postfix = ""
        self.started = self.last = time.monotonic()
        self.start_n = initial
        self.closed = False

    def _line(self) -> str:
        elapsed = time.monotonic() - self.started
        rate = (self.n - self.start_n) / elapsed if elapsed > 0 else 0.0
        done = f"{self.n}/{self.total}" if self.total is not None else f"{self.n}"
        share = f" ({100.0 * self.n / self.total:.0f}%)" if self.total else ""
        tail = f", {self.postfix}" if self.postfix else ""
        return f"{self.desc}: {done} {self.unit}{share}, {elapsed:.0f} s, {rate:.2f} {self.unit}/s{tail}"

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.last = now
            print(self._line(), file=self.stream, flush=True)

    def set_postfix(self, **values: Any) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def set_postfix_str(self, text: str) -> None:
        self.postfix = text

    def set_description(self, desc: str) -> None:
        self.desc = desc

    def write(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            print(self._line(), file=self.stream, flush=True)


class _Iterating:
    """Iterate ``iterable`` and update ``bar`` after each item; close the bar at the end."""

    def __init__(self, iterable: Iterable[Any], bar: Any) -> None:
        self.iterable, self.bar = iterable, bar

    def __iter__(self) -> Iterator[Any]:
        try:
            for item in self.iterable:
                yield item
                self.bar.update(1)
        finally:
            self.bar.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.bar, name)


def progress(
    iterable: Iterable[Any] | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    initial: int = 0,
    disable: bool = False,
    every_s: float = 30.0,
    stream: TextIO | None = None,
) -> Any:
    """A tqdm bar on a terminal, :class:`PlainProgress` lines otherwise, nothing if ``disable``.

    Without ``iterable`` it returns the bar (``update``, ``set_postfix``, ``write``, ``close``);
    with one, an iterable over it that advances the bar and keeps the bar's methods.
    """
    stream = stream if stream is not None else sys.stderr
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    if disable:
        bar: Any = _Silent()
    elif stream.isatty() and _has_tqdm():
        from tqdm import tqdm

        bar = tqdm(
            total=total, desc=desc, unit=unit, initial=initial, file=stream, dynamic_ncols=True
        )
    else:
        bar = PlainProgress(total, desc, unit, initial, every_s, stream)
    return bar if iterable is None else _Iterating(iterable, bar)


def _has_tqdm() -> bool:
    """tqdm is a dependency, but a plain-torch machine (docs/gpu.md) may lack it."""
    import importlib.util

    return importlib.util.find_spec("tqdm") is not None


class _Silent:
    """The bar of a process that reports nothing (``disable``: ranks other than 0)."""

    def __enter__(self) -> _Silent:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def update(self, n: int = 1) -> None:
        pass

    def set_description(self, desc: str) -> None:
        pass

    def set_postfix(self, **values: Any) -> None:
        pass

    def set_postfix_str(self, text: str) -> None:
        pass

    def write(self, text: str) -> None:
        print(text, flush=True)

    def close(self) -> None:
        pass


def parse_cli(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    """``parser`` with ``--verbose`` added, parsed; then :func:`quiet_third_party` unless verbose.

    What every entry point calls instead of ``parser.parse_args(argv)``.
    """
    add_verbose_flag(parser)
    args = parser.parse_args(argv)
    quiet_third_party(args.verbose or None)
    return args
