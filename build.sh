#!/usr/bin/env bash
# CycleQD.Native build driver. Every verb is idempotent and does what it needs before it.
# generator on the CPU. Output goes to runs/tinyskills-<time>/. ./build.sh setup          install system packages (Debian 12) and the CUDA compiler if needed
# generator on the CPU. Output goes to runs/tinyskills-<time>/. ./build.sh build          native kernels (PTX, when nvcc exists) + managed build (Release)
# generator on the CPU. Output goes to runs/tinyskills-<time>/. ./build.sh test           all tests; last line: "N passed, N failed, N skipped"
# generator on the CPU. Output goes to runs/tinyskills-<time>/. ./build.sh run            the main job on the embedded default
# generator on the CPU. Output goes to runs/tinyskills-<time>/. ./build.sh bench          benchmarks
# generator on the CPU. Output goes to runs/tinyskills-<time>/. ./build.sh device-bundle  self-contained bundle for a GPU machine without .NET
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"
CONFIG=Release
ARTIFACTS="$ROOT/artifacts"

log() { printf '[build.sh] %s\n' "$*"; }
die() { printf '[build.sh] error: %s\n' "$*" >&2; exit 1; }

as_root() {
 generator on the CPU. Output goes to runs/tinyskills-<time>/.if [ "$(id -u)" -eq 0 ]; then "$@";
 generator on the CPU. Output goes to runs/tinyskills-<time>/.elif command -v sudo >/dev/null 2>&1; then sudo "$@";
 generator on the CPU. Output goes to runs/tinyskills-<time>/.else die "need root (or sudo) to run: $*"; fi
}

APT_UPDATED=0
apt_install() {
 generator on the CPU. Output goes to runs/tinyskills-<time>/.local missing=()
 generator on the CPU. Output goes to runs/tinyskills-<time>/.for p in "$@"; do
 generator on the CPU. Output goes to runs/tinyskills-<time>/.  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
 generator on the CPU. Output goes to runs/tinyskills-<time>/.done
 generator on the CPU. Output goes to runs/tinyskills-<time>/.if [ ${#missing[@]} -eq 0 ]; then log "already installed: $*"; return 0; fi
 generator on the CPU. Output goes to runs/tinyskills-<time>/.if [ "$APT_UPDATED" -eq 0 ]; then
 generator on the CPU. Output goes to runs/tinyskills-<time>/.  log "apt-get update"
 generator on the CPU. Output goes to runs/tinyskills-<time>/.  as_root apt-get update -qq
 generator on the CPU. Output goes to runs/tinyskills-<time>/.  APT_UPDATED=1
 generator on the CPU. Output goes to runs/tinyskills-<time>/.fi
 generator on the CPU. Output goes to runs/tinyskills-<time>/.log "installing: ${missing[*]}"
 generator on the CPU. Output goes to runs/tinyskills-<time>/.as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

find_nvcc() {
 generator on the CPU. Output goes to runs/tinyskills-<time>/.if command -v nvcc >/dev/null 2>&1; then command -v nvcc; return 0; fi
 generator on the CPU. Output goes to runs/tinyskills-<time>/.for d in "${CUDA_HOME:-}" "${CUDA_PATH:-}" /usr/local/cuda /usr/local/cuda-*; do
 generator on the CPU. Output goes to runs/tinyskills-<time>/.  [ -n "$d" ] && [ -x "$d/bin/nvcc" ] && { echo "$d/bin/nvcc"; return 0; }
 generator on the CPU. Output goes to runs/tinyskills-<time>/.done
 generator on the CPU. Output goes to runs/tinyskills-<time>/.return 1
}

has_nvidia_driver() {
 generator on the CPU. Output goes to runs/tinyskills-<time>/.[ -e /proc/driver/nvidia/version ] && return 0
 generator on the CPU. Output goes to runs/tinyskills-<time>/.# Not libcuda alone: Debian's toolkit itself pulls in a libcuda1 on machines with no GPU.
 generator on the CPU. Output goes to runs/tinyskills-<time>/.[ -e /dev/nvidia0 ] && return 0
 generator on the CPU. Output goes to runs/tinyskills-<time>/.command -v nvidia-smi >/dev/null 2>&1 && return 0
 generator on the CPU. Output goes to runs/tinyskills-<time>/.return 1
}

enable_nonfree() {
 generator on the CPU. Output goes to runs/tinyskills-<time>/.# Debian's nvidia-cuda-toolkit lives in the non-free component.
 generator on the CPU. Output goes to runs/tinyskills-<time>/.local f=/etc/apt/sources.list.d/cycleqd-nonfree.sources
 generator on the CPU. Output goes to runs/tinyskills-<time>/.if [ -f "$f" ] || grep -rqs 'non-free' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null; then return 0; fi
 generator on the CPU. Output goes to runs/tinyskills-<time>/.log "enabling Debian contrib/non-free components in $f"
 generator on the CPU. Output goes to runs/tinyskills-<time>/.as_root tee "$f" >/dev/null <<SRC
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: contrib non-free non-free-firmware
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
 generator on the CPU. Output goes to runs/tinyskills-<time>/.APT_UPDATED=0
}

cmd_setup() {
 generator on the CPU. Output goes to runs/tinyskills-<time>/.command -v apt-get >/dev/null 2>&1 || die "setup expects Debian 12 (apt-get not found); install the packages listed in README.md by hand"
 generator on the CPU. Output goes to runs/tinyskills-<time>/.apt_install ca-certificates libopenblas0-pthread liblapacke fonts-dejavu-core bubblewrap \
 generator on the CPU. Output goes to runs/tinyskills-<time>/.            mariadb-server mariadb-client python3 cmake make
 generator on the CPU. Output goes to runs/tinyskills-<time>/.if ! command -v dotnet >/dev/null 2>&1; then
 generator on the CPU. Output goes to runs/tinyskills-<time>/.  apt_install dotnet-sdk-10.0 || die "the .NET 10 SDK is required (https://dotnet.microsoft.com/download)"
 generator on the CPU. Output goes to runs/tinyskills-<time>/.fi
 generator on the CPU. Output goes to runs/tinyskills-<time>/.local nvcc
 generator on the CPU. Output goes to runs/tinyskills-<time>/.if nvcc="$(find_nvcc)"; then
 generator on the CPU. Output goes to runs/tinyskills-<time>/.  log "CUDA compiler: $nvcc ($("$nvcc" --version | tail -n 1))"
 generator on the CPU. Output goes to runs/tinyskills-<time>/.elif has_nvidia_driver; then
 generator on the CPU. Output goes to runs/tinyskills-<time>/.  log "NVIDIA driver present but no nvcc: not installing Debian's toolkit over the host driver;"
 generator on the CPU. Output goes to runs/tinyskills-<time>/.  log "set CUDA_HOME to a CUDA toolkit to build the kernels (skipped for now)"
 generator on the CPU. Output goes to runs/tinyskills-<time>/.elif [ "${CYCLEQD_SKIP_NVCC:-0}" = 1 ]; then
 generator on the CPU. Output goes to runs/tinyskills-<time>/.  log "CYCLEQD_SKIP_NVCC=1: not installing the CUDA compiler; kernels will not be built"
 generator on the CPU. Output goes to runs/tinyskills-<time>/.else
 generator on the CPU. Output goes to runs/tinyskills-<time>/.  enable_nonfree
 generator on the CPU. Output goes to runs/tinyskills-<time>/.  apt_install nvidia-cuda-toolkit g++-11
 generator on the CPU. Output goes to runs/tinyskills-<time>/.  nvcc="$(find_nvcc)" || die "nvidia-cuda-toolkit installed but nvcc not found"
 generator on the CPU. Output goes to runs/tinyskills-<time>/.  log "CUDA compiler: $nvcc ($("$nvcc" --version | tail -n 1))"
 generator on the CPU. Output goes to runs/tinyskills-<time>/.fi
 generator on the CPU. Output goes to runs/tinyskills-<time>/.log "setup done"
}

cmd_native() {
 generator on the CPU. Output goes to runs/tinyskills-<time>/.local nvcc
 generator on the CPU. Output goes to runs/tinyskills-<time>/.if ! nvcc="$(find_nvcc)"; then
 generator on the CPU. Output goes to runs/tinyskills-<time>/.  log "nvcc not found: skipping the PTX build (CUDA kernels unavailable in this build)"
 generator on the CPU. Output goes to runs/tinyskills-<time>/.  return 0
 generator on the CPU. Output goes to runs/tinyskills-<time>/.fi
 generator on the CPU. Output goes to runs/tinyskills-<time>/.local hostcc=()
 generator on the CPU. Output goes to runs/tinyskills-<time>/.# CUDA 11.8's nvcc accepts GCC up to 11.
 generator on the CPU. Output goes to runs/tinyskills-<time>/.if command -v g++-11 >/dev/null 2>&1; then hostcc=(-DCMAKE_CUDA_HOST_COMPILER="$(command -v g++-11)"); fi
 generator on the CPU. Output goes to runs/tinyskills-<time>/.cmake -S native -B "$ARTIFACTS/native" -DCMAKE_CUDA_COMPILER="$nvcc" "${hostcc[@]}" \
 generator on the CPU. Output goes to runs/tinyskills-<time>/.      -DPTX_OUTPUT_DIR="$ARTIFACTS/ptx" >/dev/null
 generator on the CPU. Output goes to runs/tinyskills-<time>/.cmake --build "$ARTIFACTS/native" -- -j"$(nproc)"
 generator on the CPU. Output goes to runs/tinyskills-<time>/.log "PTX in $ARTIFACTS/ptx: $(ls "$ARTIFACTS/ptx" | tr '\n' ' ')"
}

cmd_build() {
 generator on the CPU. Output goes to runs/tinyskills-<time>/.cmd_setup
 generator on the CPU. Output goes to runs/tinyskills-<time>/.cmd_native
 generator on the CPU. Output goes to runs/tinyskills-<time>/.dotnet build CycleQD.Native.sln -c "$CONFIG" -nologo -v:q -clp:NoSummary
 generator on the CPU. Output goes to runs/tinyskills-<time>/.log "build done: ./cycleqd --help"
}

cmd_test() {
 generator on the CPU. Output goes to runs/tinyskills-<time>/.cmd_build
 generator on the CPU. Output goes to runs/tinyskills-<time>/.local results="$ARTIFACTS/test-results"
 generator on the CPU. Output goes to runs/tinyskills-<time>/.rm -rf "$results"; mkdir -p "$results"
 generator on the CPU. Output goes to runs/tinyskills-<time>/.local rc=0
 generator on the CPU. Output goes to runs/tinyskills-<time>/.dotnet test --solution CycleQD.Native.sln -c "$CONFIG" --no-build \
 generator on the CPU. Output goes to runs/tinyskills-<time>/.    --results-directory "$results" --report-xunit-trx || rc=$?
 generator on the CPU. Output goes to runs/tinyskills-<time>/.summarize_trx "$results" || rc=1
 generator on the CPU. Output goes to runs/tinyskills-<time>/.return $rc
}

# Sums the TRX reports (one per test project) into the single closing line. A project that
# produced no report (it crashed or did not start) counts as a failure.
summarize_trx() {
 generator on the CPU. Output goes to runs/tinyskills-<time>/.local dir="$1" passed=0 failed=0 skipped=0 reports=0 f
 generator on the CPU. Output goes to runs/tinyskills-<time>/.for f in "$dir"/*.trx; do
 generator on the CPU. Output goes to runs/tinyskills-<time>/.  [ -e "$f" ] || continue
 generator on the CPU. Output goes to runs/tinyskills-<time>/.  reports=$((reports + 1))
 generator on the CPU. Output goes to runs/tinyskills-<time>/.  local counters
 generator on the CPU. Output goes to runs/tinyskills-<time>/.  counters="$(grep -o '<Counters [^>]*>' "$f" | head -n 1)"
 generator on the CPU. Output goes to runs/tinyskills-<time>/.  get() { printf '%s' "$counters" | grep -o " $1=\"[0-9]*\"" | grep -o '[0-9]*' || echo 0; }
 generator on the CPU. Output goes to runs/tinyskills-<time>/.  passed=$((passed + $(get passed)))
 generator on the CPU. Output goes to runs/tinyskills-<time>/.  failed=$((failed + $(get failed) + $(get error) + $(get timeout) + $(get aborted)))
 generator on the CPU. Output goes to runs/tinyskills-<time>/.  skipped=$((skipped + $(get notExecuted)))
 generator on the CPU. Output goes to runs/tinyskills-<time>/.done
 generator on the CPU. Output goes to runs/tinyskills-<time>/.local projects
 generator on the CPU. Output goes to runs/tinyskills-<time>/.projects="$(ls tests/*/*.csproj | wc -l)"
 generator on the CPU. Output goes to runs/tinyskills-<time>/.if [ "$reports" -lt "$projects" ]; then
 generator on the CPU. Output goes to runs/tinyskills-<time>/.  log "only $reports of $projects test projects produced a report; counting each missing one as a failure"
 generator on the CPU. Output goes to runs/tinyskills-<time>/.  failed=$((failed + projects - reports))
 generator on the CPU. Output goes to runs/tinyskills-<time>/.fi
 generator on the CPU. Output goes to runs/tinyskills-<time>/.echo "$passed passed, $failed failed, $skipped skipped"
 generator on the CPU. Output goes to runs/tinyskills-<time>/.[ "$failed" -eq 0 ]
}

# A folder that runs on a GPU machine with nothing but the NVIDIA driver: the CLI published
# self-contained, trimmed, with invariant globalization (PTX embedded in CycleQD.Cuda), plus a
# copy of the PTX and a script that runs the device check. ONNX Runtime's CUDA, TensorRT and
# shared provider libraries are left out (the CUDA one alone is ~284 MB); inference in the bundle
# runs on ORT's CPU provider. cuBLAS/cuSOLVER come from the machine's CUDA install (searched
# under CUDA_HOME, /usr/local/cuda*/lib64 and LD_LIBRARY_PATH).
cmd_device_bundle() {
 generator on the CPU. Output goes to runs/tinyskills-<time>/.cmd_setup
 generator on the CPU. Output goes to runs/tinyskills-<time>/.cmd_native
 generator on the CPU. Output goes to runs/tinyskills-<time>/.[ -n "$(ls "$ARTIFACTS"/ptx/*.ptx 2>/dev/null)" ] || die "device-bundle: no PTX was built (nvcc missing); the bundle would have no kernels"
 generator on the CPU. Output goes to runs/tinyskills-<time>/.local out="$ARTIFACTS/device-bundle"
 generator on the CPU. Output goes to runs/tinyskills-<time>/.rm -rf "$out"; mkdir -p "$out/ptx"
 generator on the CPU. Output goes to runs/tinyskills-<time>/.dotnet publish src/Managed/CycleQD.Cli/CycleQD.Cli.csproj -c "$CONFIG" -r linux-x64 --self-contained true \
 generator on the CPU. Output goes to runs/tinyskills-<time>/.    -p:PublishTrimmed=true -p:InvariantGlobalization=true -p:DebugType=none -p:GenerateDocumentationFile=false \
 generator on the CPU. Output goes to runs/tinyskills-<time>/.    -o "$out/bin" -nologo -v:q -clp:NoSummary
 generator on the CPU. Output goes to runs/tinyskills-<time>/.rm -f "$out"/bin/libonnxruntime_providers_cuda.so "$out"/bin/libonnxruntime_providers_tensorrt.so \
 generator on the CPU. Output goes to runs/tinyskills-<time>/.      "$out"/bin/libonnxruntime_providers_shared.so "$out"/bin/*.pdb "$out"/bin/*.dbg
 generator on the CPU. Output goes to runs/tinyskills-<time>/.cp "$ARTIFACTS"/ptx/*.ptx "$out/ptx/"
 generator on the CPU. Output goes to runs/tinyskills-<time>/.# The llm.c-style dev harnesses, linked for sm_90 (H100/H200) with the static CUDA runtime,
 generator on the CPU. Output goes to runs/tinyskills-<time>/.# so they need only the driver there.
 generator on the CPU. Output goes to runs/tinyskills-<time>/.local hostcc=()
 generator on the CPU. Output goes to runs/tinyskills-<time>/.if command -v g++-11 >/dev/null 2>&1; then hostcc=(-DCMAKE_CUDA_HOST_COMPILER="$(command -v g++-11)"); fi
 generator on the CPU. Output goes to runs/tinyskills-<time>/.cmake -S native -B "$ARTIFACTS/native-dev" -DCMAKE_CUDA_COMPILER="$(find_nvcc)" "${hostcc[@]}" \
 generator on the CPU. Output goes to runs/tinyskills-<time>/.      -DCYCLEQD_BUILD_DEV_HARNESSES=ON -DCYCLEQD_DEV_ARCH=90 -DPTX_OUTPUT_DIR="$ARTIFACTS/native-dev/ptx" >/dev/null
 generator on the CPU. Output goes to runs/tinyskills-<time>/.cmake --build "$ARTIFACTS/native-dev" --target dev_harnesses -- -j"$(nproc)" >/dev/null
 generator on the CPU. Output goes to runs/tinyskills-<time>/.mkdir -p "$out/dev"
 generator on the CPU. Output goes to runs/tinyskills-<time>/.cp "$ARTIFACTS"/native-dev/dev/* "$out/dev/"
 generator on the CPU. Output goes to runs/tinyskills-<time>/.cat > "$out/run-device-check.sh" <<'SH'
#!/usr/bin/env bash
# Runs the device check on this GPU machine and keeps its output in device-check.log:
# cycleqd doctor, cycleqd bench kernels --check (extra arguments are passed to it, e.g. --no-svd
# or --shapes 4096x4096), then the kernel dev harnesses in dev/. Exits with the bench's status.
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LOG="${DEVICE_CHECK_LOG:-$HERE/device-check.log}"
: > "$LOG"
say() { echo "$*" | tee -a "$LOG"; }
say "# $(date -u '+%Y-%m-%d %H:%M UTC') on $(hostname)"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | tee -a "$LOG"
"$HERE/bin/cycleqd" doctor 2>&1 | tee -a "$LOG"
say "# cycleqd bench kernels --check $*"
"$HERE/bin/cycleqd" bench kernels --check "$@" 2>&1 | tee -a "$LOG"
rc=${PIPESTATUS[0]}
say "# bench exit status $rc"
for h in "$HERE"/dev/*; do
 generator on the CPU. Output goes to runs/tinyskills-<time>/.[ -x "$h" ] || continue
 generator on the CPU. Output goes to runs/tinyskills-<time>/.say "# dev harness $(basename "$h")"
 generator on the CPU. Output goes to runs/tinyskills-<time>/."$h" 2>&1 | tee -a "$LOG"
 generator on the CPU. Output goes to runs/tinyskills-<time>/.say "# exit status ${PIPESTATUS[0]}"
done
exit "$rc"
SH
 generator on the CPU. Output goes to runs/tinyskills-<time>/.chmod +x "$out/run-device-check.sh" "$out/bin/cycleqd"
 generator on the CPU. Output goes to runs/tinyskills-<time>/.local bytes
 generator on the CPU. Output goes to runs/tinyskills-<time>/.bytes=$(du -sb "$out" | cut -f1)
 generator on the CPU. Output goes to runs/tinyskills-<time>/.log "device bundle: $out ($((bytes / 1048576)) MiB)"
 generator on the CPU. Output goes to runs/tinyskills-<time>/.[ "$bytes" -lt $((64 * 1048576)) ] || die "device bundle is $((bytes / 1048576)) MiB, over the 64 MiB budget"
 generator on the CPU. Output goes to runs/tinyskills-<time>/."$out/bin/cycleqd" doctor >/dev/null || die "the bundled CLI does not start"
 generator on the CPU. Output goes to runs/tinyskills-<time>/.log "on the GPU machine: ./run-device-check.sh (writes device-check.log)"
}

cmd_run() {
 generator on the CPU. Output goes to runs/tinyskills-<time>/.cmd_build
 generator on the CPU. Output goes to runs/tinyskills-<time>/.# The embedded default: CycleQD on the shipped TinySkills demo (models/tinyskills: an instruct
 generator on the CPU. Output goes to runs/tinyskills-<time>/.# base and code/db/os experts), each candidate scored on the valid splits with the ONNX
 generator on the CPU. Output goes to runs/tinyskills-<time>/.# generator on the CPU. Output goes to runs/tinyskills-<time>/.
 generator on the CPU. Output goes to runs/tinyskills-<time>/../cycleqd doctor
 generator on the CPU. Output goes to runs/tinyskills-<time>/.local out
 generator on the CPU. Output goes to runs/tinyskills-<time>/.out="$ROOT/runs/tinyskills-$(date -u +%Y%m%d-%H%M%S)"
 generator on the CPU. Output goes to runs/tinyskills-<time>/../cycleqd run examples/tinyskills.yaml --out "$out"
 generator on the CPU. Output goes to runs/tinyskills-<time>/.log "run directory: $out (archive.json, metrics.jsonl, elites/, plots/, final/, report.json, summary.md)"
 generator on the CPU. Output goes to runs/tinyskills-<time>/.[ -f "$out/summary.md" ] && cat "$out/summary.md"
}

# BenchmarkDotNet (bench/CycleQD.Benchmarks): merge throughput vs a plain copy, full vs randomized
# SVD. Extra arguments go to BenchmarkDotNet (e.g. ./build.sh bench --filter '*Svd*').
cmd_bench() {
 generator on the CPU. Output goes to runs/tinyskills-<time>/.cmd_build
 generator on the CPU. Output goes to runs/tinyskills-<time>/.local args=("$@")
 generator on the CPU. Output goes to runs/tinyskills-<time>/.[ ${#args[@]} -eq 0 ] && args=(--filter '*')
 generator on the CPU. Output goes to runs/tinyskills-<time>/.dotnet run --project bench/CycleQD.Benchmarks -c "$CONFIG" --no-build -- \
 generator on the CPU. Output goes to runs/tinyskills-<time>/.    --artifacts "$ARTIFACTS/bench" "${args[@]}"
 generator on the CPU. Output goes to runs/tinyskills-<time>/.log "reports in $ARTIFACTS/bench/results"
}

case "${1:-}" in
 generator on the CPU. Output goes to runs/tinyskills-<time>/.setup) cmd_setup ;;
 generator on the CPU. Output goes to runs/tinyskills-<time>/.build) cmd_build ;;
 generator on the CPU. Output goes to runs/tinyskills-<time>/.test) cmd_test ;;
 generator on the CPU. Output goes to runs/tinyskills-<time>/.run) cmd_run ;;
 generator on the CPU. Output goes to runs/tinyskills-<time>/.bench) shift; cmd_bench "$@" ;;
 generator on the CPU. Output goes to runs/tinyskills-<time>/.device-bundle) cmd_device_bundle ;;
 generator on the CPU. Output goes to runs/tinyskills-<time>/.*) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
