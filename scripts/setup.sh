#!/usr/bin/env bash
# Create (or refresh) .venv/ in the repository root with the pinned TorchRec stack.
# Idempotent: when pyproject.toml and the requirements file are unchanged since the last
# successful run, it only verifies the imports (a few seconds).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python_bin="${PYTHON:-python3}"
# redis-server (Debian package): the ranking service's Redis store, started by tests/serve
if ! command -v redis-server >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "[setup] installing redis-server (apt-get)"
        if ! { apt-get install -y -q redis-server >/dev/null 2>&1 \
               || { apt-get update -q >/dev/null 2>&1 \
                    && apt-get install -y -q redis-server >/dev/null 2>&1; }; }; then
            echo "[setup] 'apt-get install redis-server' failed" >&2
            exit 1
        fi
    else
        # only the Redis store's tests need it; the main job and the rest run without it
        echo "[setup] note: redis-server is missing (as root: apt-get install redis-server)" >&2
    fi
fi
# a Java runtime (Debian package): Spark's JVM for `prepare --engine spark` and its tests
if ! command -v java >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "[setup] installing a Java runtime (apt-get default-jre-headless)"
        if ! { apt-get install -y -q default-jre-headless >/dev/null 2>&1 \
               || { apt-get update -q >/dev/null 2>&1 \
                    && apt-get install -y -q default-jre-headless >/dev/null 2>&1; }; }; then
            echo "[setup] 'apt-get install default-jre-headless' failed" >&2
            exit 1
        fi
    else
        echo "[setup] note: java is missing (as root: apt-get install default-jre-headless)" >&2
    fi
fi
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    flavor=cuda
else
    flavor=cpu
fi
req="requirements/${flavor}.txt"
stamp=".venv/.lifelongrec-installed"
want="$(cat pyproject.toml "$req" tools/fbgemm-gpu-shim/pyproject.toml | sha256sum | cut -d' ' -f1) ${flavor}"
if [ ! -x .venv/bin/python ]; then
    echo "[setup] creating .venv with $($python_bin --version)"
    "$python_bin" -m venv .venv
fi
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "[setup] installing the ${flavor} stack from ${req} (first run takes about a minute)"
    # pip's own notices (index locations, setuptools' editable-install banner) go to a log,
    # shown only when a step fails, so that the command prints its own lines
    log=".venv/install.log"
    : > "$log"
    for step in "pip install --upgrade pip" "pip install -r $req" "pip check"; do
        # shellcheck disable=SC2086
        if ! .venv/bin/python -m $step >> "$log" 2>&1; then
            echo "[setup] '$step' failed; its output ($log):" >&2
            tail -n 60 "$log" >&2
            exit 1
        fi
    done
    echo "[setup] installed; pip check clean (details: $log)"
    echo "$want" > "$stamp"
fi
.venv/bin/python - <<'PY'
import torch, torchrec  # noqa: F401  (fails loudly if the CUDA fbgemm slipped in on a CPU box)
print(f"[setup] ok: torch {torch.__version__}, torchrec {torchrec.__version__}, "
      f"device {'cuda' if torch.cuda.is_available() else 'cpu'}")
PY
