#!/usr/bin/env bash
# The device check, run from an unpacked device bundle on a GPU machine (no .NET needed there):
#   1. nvidia-smi and `cycleqd doctor`;
#   2. a quick `bench kernels --check` on one 4096x4096 weight (catches a broken kernel fast);
#   3. the CUDA test project (every test that skips without a GPU runs here);
#   4. the full `bench kernels --check` on the Llama-3-8B shapes with the SVD comparison
#      (extra arguments of this script are passed to it);
#   5. the kernel dev harnesses in dev/;
#   6. CycleQD on examples/synthetic.yaml with --device cuda and --device cpu (when run from a
#      checkout that has examples/).
# Each step has its own time limit (seconds, environment STEP_LIMIT_<n>) so one hung step
# cannot eat the others. Output goes to stdout and to $DEVICE_CHECK_DIR (default: beside this
# script) as device-check.log, the test report and the run directories.
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DIR="${DEVICE_CHECK_DIR:-$HERE}"
mkdir -p "$DIR"
LOG="$DIR/device-check.log"
: > "$LOG"
# shellcheck source=device-steps.sh
source "$HERE/device-steps.sh"

export LD_LIBRARY_PATH="$HERE/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# cuBLAS/cuSOLVER: the CUDA toolkit's, else the ones a pip-installed PyTorch brings.
if ! ls /usr/local/cuda*/lib64/libcublas.so.* >/dev/null 2>&1 && ! ldconfig -p | grep -q libcublas.so; then
  for d in $(python3 -c 'import nvidia, os; print(" ".join(os.path.join(p, s, "lib") for p in nvidia.__path__ for s in ("cublas", "cusolver", "cusparse", "nvjitlink")))' 2>/dev/null); do
    [ -d "$d" ] && LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$d"
  done
fi
CLI="$HERE/bin/cycleqd"

say "# device check $(date -u '+%Y-%m-%d %H:%M UTC') on $(hostname)"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv 2>&1 | tee -a "$LOG"
say "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2) x $(nproc)"
step "${STEP_LIMIT_1:-30}" "cycleqd doctor" "$CLI" doctor
step "${STEP_LIMIT_2:-90}" "quick kernel check (4096x4096, no SVD)" "$CLI" bench kernels --check --shapes 4096x4096 --no-svd
quick=$?
# Two host-side checks read the repository's build tree (native/ harness output, artifacts/ptx),
# which the bundle does not carry; they run in CI instead.
step "${STEP_LIMIT_3:-150}" "CUDA tests" "$HERE/tests/CycleQD.Cuda.Tests" --progress off --output detailed --results-directory "$DIR/test-results" \
  --filter-not-class CycleQD.Cuda.Tests.KernelHostCheckTests \
  --filter-not-method CycleQD.Cuda.Tests.PtxEmbeddingTests.EmbeddedPtx_HasEveryKernelForCompute80And90
step "${STEP_LIMIT_4:-240}" "kernel check, Llama-3-8B shapes" "$CLI" bench kernels --check "$@"
full=$?
for h in "$HERE"/dev/*; do
  [ -x "$h" ] || continue
  step "${STEP_LIMIT_5:-20}" "dev harness $(basename "$h")" "$h"
done
EXAMPLES="${CYCLEQD_EXAMPLES:-$PWD/examples}"
if [ -f "$EXAMPLES/synthetic.yaml" ]; then
  for dev in cuda cpu; do
    rm -rf "$DIR/synthetic-$dev"
    step "${STEP_LIMIT_6:-60}" "cycleqd run synthetic.yaml --device $dev" "$CLI" run "$EXAMPLES/synthetic.yaml" --out "$DIR/synthetic-$dev" --device "$dev"
  done
fi
say ""
say "# quick check exit $quick, full check exit $full"
exit "$full"
