#!/usr/bin/env bash
# The main job on the bundled real data. Until `pipelines.prepare` and the trainer land it sets up
# the environment and embeds + clusters MovieLens item titles if a prepared dataset exists.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
if [ -f pipelines/prepare.py ]; then
    .venv/bin/python -m pipelines.prepare --dataset movielens-1m-u2999 --out data/ml1m
else
    echo "[main] pipelines.prepare is not implemented yet (see the open issues)"
fi
