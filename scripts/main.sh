#!/usr/bin/env bash
# The main job: set up .venv, prepare MovieLens-1M (users 1..2999) from ../shared/data (or a
# fallback), train DMGIN and SIMHard the same way, print test AUC/GAUC beside the no-model floor.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
exec .venv/bin/python -m pipelines.main_job "$@"
