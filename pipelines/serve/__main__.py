"""Run the ranking service over HTTP (FastAPI + uvicorn).

Usage::

    python -m pipelines.serve --model runs/ml1m_dmgin --port 8000
    python -m pipelines.serve --model dmgin.pt2 --store redis://127.0.0.1:6379/0

``--model``: a run or checkpoint directory, or a ``state_dict`` file from
``python -m pipelines.export``. ``--store``: ``memory://`` (default: logs and an LRU of states
in this process) or ``redis://host:port/db``. Endpoints and limits: ``docs/serving.md``.
Errors loading the model or reaching the store print one line and exit with code 1.
"""

from __future__ import annotations

import argparse
import sys

from pipelines.console import parse_cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="run/checkpoint directory or model file")
    parser.add_argument("--store", default="memory://", help="memory:// or redis://host:port/db")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--capacity", type=int, default=10_000, help="memory:// LRU users")
    parser.add_argument("--max-candidates", type=int, default=2000, help="C limit per /rank")
    parser.add_argument("--max-events", type=int, default=100_000, help="limit per /append")
    parser.add_argument(
        "--max-state-age", type=float, default=3600.0, help="seconds before a state is rebuilt"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parse_cli(parser, argv)
    if min(args.capacity, args.max_candidates, args.max_events, args.threads) < 1:
        parser.error("--capacity, --max-candidates, --max-events and --threads must be >= 1")

    import torch
    import uvicorn

    from pipelines.serve.model_loader import load_serving_model
    from pipelines.serve.plain_model import ExportError
    from pipelines.serve.service import ServiceConfig, create_app
    from pipelines.serve.state.store import open_store

    torch.set_num_threads(args.threads)
    try:
        model = load_serving_model(args.model)
        store = open_store(args.store, args.capacity)
    except (ExportError, ConnectionError, ValueError) as err:
        print(f"serve error: {err}", file=sys.stderr)
        return 1
    app = create_app(
        model, store, ServiceConfig(args.max_candidates, args.max_events, args.max_state_age)
    )
    print(
        f"[serve] {model.encoder_name} version {model.version} on http://{args.host}:{args.port} "
        f"(store {args.store})",
        flush=True,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
