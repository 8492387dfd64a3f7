#!/usr/bin/env bash
# Set up .venv (idempotent) and run lint + the whole test suite (unit, 2-rank gloo, benchmark smoke).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"   # torchx's dist.ddp calls `torchrun` by name
# one intra-op thread per process: the tests' tensors are small and many tests run 2 ranks or a
# child process, so threads only contend (the suite took 15.5 min with torch's default of 2
# threads on the 2-core CI machine and under 9 min with 1)
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
.venv/bin/ruff check .
.venv/bin/python -m pytest -q -p no:cacheprovider --timeout=900 "$@"
