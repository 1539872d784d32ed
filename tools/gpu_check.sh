#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: build darknet_py with its CUDA kernels, run every GPU-marked test (the tests the
# CI runs under emulation, on real CuPy arrays), run a small subset under compute-sanitizer's memcheck and racecheck,
# and print one summary line. Logs go to $LOG_DIR (default gpu-check-logs/). Budget: under 8 minutes on an H100.
#   tools/gpu_check.sh [extra pytest args]
set -uo pipefail
cd "$(dirname "$0")/.."
LOG_DIR=${LOG_DIR:-gpu-check-logs}
mkdir -p "$LOG_DIR"
start=$(date +%s)
summary=()
status=0

step() {   # step NAME COMMAND...: run, log, record pass/fail and seconds
    local name=$1; shift
    local t0=$(date +%s)
    if "$@" > "$LOG_DIR/$name.log" 2>&1; then
        summary+=("$name ok ($(( $(date +%s) - t0 ))s)")
    else
        summary+=("$name FAILED ($(( $(date +%s) - t0 ))s, $LOG_DIR/$name.log)")
        status=1
    fi
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$LOG_DIR/gpu.txt" 2>&1
git rev-parse --short HEAD > "$LOG_DIR/commit.txt" 2>/dev/null

# no download on the lent machines: build against what is installed
step build pip install --no-build-isolation --no-deps -e .
step import python -c "import darknet_py._cuda as c, cupy; assert c.driver_version() > 0 and cupy.cuda.is_available()"
step gpu-tests python -m pytest -q -m gpu -p no:cacheprovider --junitxml="$LOG_DIR/gpu-tests.xml" "$@"

# compute-sanitizer on the kernel-level tests (small shapes): out-of-bounds accesses, then shared-memory races
SANITIZED="tests/test_cuda_emulation.py tests/test_cuda_activations.py"
for extra in tests/test_cuda_conv.py tests/test_cuda_batchnorm.py tests/test_cuda_pooling.py; do
    [ -f "$extra" ] && SANITIZED="$SANITIZED $extra"
done
if command -v compute-sanitizer > /dev/null; then
    step memcheck compute-sanitizer --tool memcheck --error-exitcode 99 --print-limit 20 \
        python -m pytest -q -x -m gpu -p no:cacheprovider $SANITIZED -k "not slow"
    step racecheck compute-sanitizer --tool racecheck --error-exitcode 99 --print-limit 20 \
        python -m pytest -q -x -m gpu -p no:cacheprovider $SANITIZED -k "not slow"
else
    summary+=("compute-sanitizer not found")
    status=1
fi

tests_line=$(grep -E "passed|failed" "$LOG_DIR/gpu-tests.log" | tail -1)
echo "gpu_check: $(cat "$LOG_DIR/gpu.txt" 2>/dev/null | head -1) | commit $(cat "$LOG_DIR/commit.txt" 2>/dev/null) |" \
     "${summary[*]} | tests: ${tests_line:-none} | $(( $(date +%s) - start ))s total"
exit $status
