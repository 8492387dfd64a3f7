#!/usr/bin/env bash
# The one command of a GPU session (docs/gpu.md): run from the repository root with the system
# python3 (torch with CUDA; no torchrec, fbgemm, yaml or tqdm needed):
#
#     bash scripts/gpu_check.sh
#
# Stages, each with its own time limit (about 8 minutes in all, worst case):
#   1. torch / CUDA / GPU facts                                  (30 s)
#   2. CUDA parity tests + plain-torch tests (120 s), then the parity error table (45 s)
#   3. python -m benchmarks.encoders on CUDA: B=256, L in {1k, 10k, 50k}, fp32 and bf16, forward +
#      backward; configurations that would not fit its budget are skipped and recorded (240 s)
#   4. the issue's targets from encoders.json (CPU) and encoders_cuda.json  (20 s)
#   5. the CPU op/encoder tests under this machine's torch           (45 s)
# Writes benchmarks/results/encoders_cuda.json; with $OUT set, copies it and every log there.
# A stage that fails or runs out of time is reported and the next one still runs.
#
# GPU_CHECK_DEVICE=cpu runs the same stages on the CPU at toy sizes into a temporary folder
# (tests/benchmarks/test_gpu_check_script.py does, so CI proves the script's parts work).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON="${PYTHON:-python3}"
DEVICE="${GPU_CHECK_DEVICE:-cuda}"
WORK="$(mktemp -d)"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-8}" PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
# -o addopts="": no pipelines/ doctests, no pytest-timeout; -W default: a torch deprecation
# warning is shown, not turned into an error by pyproject's filterwarnings=error
PYTEST=("$PYTHON" -m pytest -q -rs -p no:cacheprovider -o addopts="" --import-mode=importlib
    -W default)

if [[ "$DEVICE" == cpu ]]; then
    RESULT="${GPU_CHECK_RESULT:-$WORK/encoders_device.json}"
    BENCH=(--smoke --device cpu --dtype fp32,bf16 --models DIN,SIMHard,DMGIN --budget-s 60)
    TESTS=(tests/gpu/test_cuda_parity.py -k "test_op_parity and cpu")
    T_TESTS=120 T_BENCH=120 CPU_TESTS=()
else
    RESULT="${GPU_CHECK_RESULT:-benchmarks/results/encoders_cuda.json}"
    BENCH=(--device cuda --dtype fp32,bf16 --lengths 1000,10000,50000 --batch 256 --repeats 3
        --skip-pandas --budget-s 190)
    TESTS=(tests/gpu/test_cuda_parity.py tests/test_plain_torch.py
        tests/benchmarks/test_encoders_device.py)
    T_TESTS=120 T_BENCH=240
    CPU_TESTS=(tests/ops tests/encoders/test_baselines.py tests/encoders/test_dmgin.py
        tests/encoders/test_ciubm.py tests/encoders/test_example_inputs.py)
fi

status=0
stage() {  # stage NAME SECONDS COMMAND...: run with a time limit, log to $WORK/NAME.log
    local name="$1" limit="$2"
    shift 2
    echo "=== $name (limit ${limit}s): $*"
    local start=$SECONDS
    timeout --kill-after=10 "$limit" "$@" > >(tee "$WORK/$name.log") 2>&1
    local rc=$?
    echo "=== $name: exit $rc after $((SECONDS - start))s"
    echo "$name $rc $((SECONDS - start))" >> "$WORK/stages.txt"
    [[ $rc -eq 0 ]] || status=1
    save
}
save() {  # copy what exists so far to $OUT (the session keeps it even if we are killed)
    if [[ -n "${OUT:-}" ]]; then
        mkdir -p "$OUT"
        cp -f "$WORK"/*.log "$WORK"/*.txt "$WORK"/*.json "$OUT"/ 2>/dev/null
        [[ -f "$RESULT" ]] && cp -f "$RESULT" "$OUT"/
    fi
    return 0
}

# The copied tree has no .git: this hash of the measured code says which code ran (the same
# line in a checkout gives the same hash for the same files).
code_hash() {
    find components benchmarks scripts tests/gpu -type f \( -name '*.py' -o -name '*.sh' \) \
        | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -d' ' -f1
}
echo "code sha256 $(code_hash)" | tee "$WORK/code_sha256.txt"

stage info 30 bash -c "nvidia-smi || true
\"$PYTHON\" - <<'EOF'
import json, platform, torch
from benchmarks.device import device_info, resolve_device
print('python', platform.python_version())
print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())
print(json.dumps(device_info(resolve_device('$DEVICE')), indent=2))
EOF"

stage tests "$T_TESTS" "${PYTEST[@]}" "${TESTS[@]}"

# the largest relative error of every encoder case and precision (what the bounds are set from)
stage parity_errors 45 "$PYTHON" -c "
import json, sys
sys.path.insert(0, 'tests/gpu')
import test_cuda_parity as parity
parity.CASES = dict(list(parity.CASES.items())[:2]) if '$DEVICE' == 'cpu' else parity.CASES
rows = parity.error_table('$DEVICE')
json.dump(rows, open('$WORK/parity_errors.json', 'w'), indent=2)
for row in rows:
    print(row)
"

stage benchmark "$T_BENCH" "$PYTHON" -m benchmarks.encoders "${BENCH[@]}" --output "$RESULT"

stage targets 20 "$PYTHON" -m benchmarks.cuda_targets --cuda "$RESULT"

if [[ ${#CPU_TESTS[@]} -gt 0 ]]; then
    stage cpu_tests 45 "${PYTEST[@]}" -x "${CPU_TESTS[@]}"
fi

echo "=== stages (name, exit code, seconds):"
cat "$WORK/stages.txt"
echo "=== result file: $RESULT; logs: $WORK${OUT:+ (copied to $OUT)}"
save
exit $status
