#!/usr/bin/env bash
# Set up .venv (idempotent) and run lint + the whole test suite (unit, 2-rank gloo, benchmark smoke).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"   # torchx's dist.ddp calls `torchrun` by name
.venv/bin/ruff check .
.venv/bin/python -m pytest -q -p no:cacheprovider --timeout=900 "$@"
