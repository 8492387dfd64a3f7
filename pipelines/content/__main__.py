"""Run the content steps of one prepared dataset in order: embed -> C-SFT -> cluster.

Usage::

    python -m pipelines.content --dataset DIR [--embed=FLAGS] [--csft=FLAGS] [--cluster=FLAGS]

Each ``FLAGS`` is one string of that step's own flags, split like a shell command line and
passed through unchanged (see ``python -m pipelines.content.embed --help``, ``... .csft`` and
``... .cluster``); ``--dataset DIR`` is given to every step. Write ``--embed=--from-file x``
with ``=`` so a value that starts with ``-`` is not read as a flag of this command. The cluster
step needs ``--k`` or ``--target-ratio``; without ``--cluster`` it runs with ``--k 256``. The
first step that fails stops the run with its exit code. This is the one entry point behind the
``content`` torchx component (recipes/components.py).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable

from pipelines.console import parse_cli
from pipelines.content import cluster, csft, embed

DEFAULT_CLUSTER_FLAGS = "--k 256"


def steps() -> list[tuple[str, Callable[[list[str] | None], int]]]:
    """The steps in execution order, as ``(flag name, main function)``."""
    return [("embed", embed.main), ("csft", csft.main), ("cluster", cluster.main)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Content steps in order: embed -> C-SFT -> cluster (flags passed through)."
    )
    parser.add_argument("--dataset", required=True, help="prepared dataset directory")
    parser.add_argument("--embed", default="", help="flags of pipelines.content.embed")
    parser.add_argument("--csft", default="", help="flags of pipelines.content.csft")
    parser.add_argument(
        "--cluster",
        default=DEFAULT_CLUSTER_FLAGS,
        help=f"flags of pipelines.content.cluster (default: {DEFAULT_CLUSTER_FLAGS!r})",
    )
    args = parse_cli(parser, argv)
    for name, step in steps():
        flags = ["--dataset", args.dataset, *shlex.split(getattr(args, name))]
        print(f"[content] {name}: {shlex.join(flags)}", flush=True)
        code = step(flags)
        if code != 0:
            print(f"[content] {name} failed with exit code {code}", file=sys.stderr)
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
