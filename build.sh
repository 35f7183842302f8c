#!/usr/bin/env bash
# CycleQD.Native build driver. Every verb is idempotent and does what it needs before it.
#   ./build.sh setup          install system packages (Debian 12) and the CUDA compiler if needed;
#                             build the AgentBench OS root file system (scripts/build-os-rootfs.sh)
#   ./build.sh build          native kernels (PTX, when nvcc exists) + managed build (Release)
#   ./build.sh pack           NuGet packages of the libraries (+ symbols) into artifacts/packages
#   ./build.sh test           all tests, then the embedding sample built from the fresh packages;
#                             last line: "N passed, N failed, N skipped"
#   ./build.sh run            the main job on the embedded default
#   ./build.sh bench          benchmarks
#   ./build.sh device-bundle  self-contained bundle for a GPU machine without .NET
#   ./build.sh device-provider  ONNX Runtime's CUDA provider as xz parts of at most 40 MiB
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"
CONFIG=Release
ARTIFACTS="$ROOT/artifacts"

log() { printf '[build.sh] %s\n' "$*"; }
die() { printf '[build.sh] error: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@";
  elif command -v sudo >/dev/null 2>&1; then sudo "$@";
  else die "need root (or sudo) to run: $*"; fi
}

APT_UPDATED=0
apt_install() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then log "already installed: $*"; return 0; fi
  if [ "$APT_UPDATED" -eq 0 ]; then
    log "apt-get update"
    as_root apt-get update -qq
    APT_UPDATED=1
  fi
  log "installing: ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

find_nvcc() {
  if command -v nvcc >/dev/null 2>&1; then command -v nvcc; return 0; fi
  for d in "${CUDA_HOME:-}" "${CUDA_PATH:-}" /usr/local/cuda /usr/local/cuda-*; do
    [ -n "$d" ] && [ -x "$d/bin/nvcc" ] && { echo "$d/bin/nvcc"; return 0; }
  done
  return 1
}

has_nvidia_driver() {
  [ -e /proc/driver/nvidia/version ] && return 0
  # Not libcuda alone: Debian's toolkit itself pulls in a libcuda1 on machines with no GPU.
  [ -e /dev/nvidia0 ] && return 0
  command -v nvidia-smi >/dev/null 2>&1 && return 0
  return 1
}

enable_nonfree() {
  # Debian's nvidia-cuda-toolkit lives in the non-free component.
  local f=/etc/apt/sources.list.d/cycleqd-nonfree.sources
  if [ -f "$f" ] || grep -rqs 'non-free' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null; then return 0; fi
  log "enabling Debian contrib/non-free components in $f"
  as_root tee "$f" >/dev/null <<SRC
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: contrib non-free non-free-firmware
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  APT_UPDATED=0
}

cmd_setup() {
  command -v apt-get >/dev/null 2>&1 || die "setup expects Debian 12 (apt-get not found); install the packages listed in README.md by hand"
  apt_install ca-certificates g++ libopenblas0-pthread liblapacke fonts-dejavu-core bubblewrap \
              mariadb-server mariadb-client redis-server python3 cmake make mmdebstrap
  # The pinned root file system AgentBench OS samples run on (built once, reused while its recipe holds).
  if [ "${CYCLEQD_SKIP_OS_ROOTFS:-0}" = 1 ]; then
    log "CYCLEQD_SKIP_OS_ROOTFS=1: not building the AgentBench OS root file system; OS evaluations will say how to build it"
  else
    as_root env CYCLEQD_CACHE="${CYCLEQD_CACHE:-/var/cache/cycleqd}" "$ROOT/scripts/build-os-rootfs.sh"
  fi
  if ! command -v dotnet >/dev/null 2>&1; then
    apt_install dotnet-sdk-10.0 || die "the .NET 10 SDK is required (https://dotnet.microsoft.com/download)"
  fi
  local nvcc
  if nvcc="$(find_nvcc)"; then
    log "CUDA compiler: $nvcc ($("$nvcc" --version | tail -n 1))"
  elif has_nvidia_driver; then
    log "NVIDIA driver present but no nvcc: not installing Debian's toolkit over the host driver;"
    log "set CUDA_HOME to a CUDA toolkit to build the kernels (skipped for now)"
  elif [ "${CYCLEQD_SKIP_NVCC:-0}" = 1 ]; then
    log "CYCLEQD_SKIP_NVCC=1: not installing the CUDA compiler; kernels will not be built"
  else
    enable_nonfree
    apt_install nvidia-cuda-toolkit g++-11
    nvcc="$(find_nvcc)" || die "nvidia-cuda-toolkit installed but nvcc not found"
    log "CUDA compiler: $nvcc ($("$nvcc" --version | tail -n 1))"
  fi
  log "setup done"
}

cmd_native() {
  local nvcc
  if ! nvcc="$(find_nvcc)"; then
    log "nvcc not found: skipping the PTX build (CUDA kernels unavailable in this build)"
    return 0
  fi
  local hostcc=()
  # CUDA 11.8's nvcc accepts GCC up to 11.
  if command -v g++-11 >/dev/null 2>&1; then hostcc=(-DCMAKE_CUDA_HOST_COMPILER="$(command -v g++-11)"); fi
  cmake -S native -B "$ARTIFACTS/native" -DCMAKE_CUDA_COMPILER="$nvcc" "${hostcc[@]}" \
        -DPTX_OUTPUT_DIR="$ARTIFACTS/ptx" >/dev/null
  cmake --build "$ARTIFACTS/native" -- -j"$(nproc)"
  log "PTX in $ARTIFACTS/ptx: $(ls "$ARTIFACTS/ptx" | tr '\n' ' ')"
}

cmd_build() {
  cmd_setup
  cmd_native
  dotnet build CycleQD.Native.sln -c "$CONFIG" -nologo -v:q -clp:NoSummary
  log "build done: ./cycleqd --help"
}

# The library packages (docs/library.md): one .nupkg and .snupkg per packable project under
# src/Managed, all at the version CycleQDVersion in Directory.Build.props.
PACKAGES=(CycleQD.Core CycleQD.Tensors CycleQD.Cpu CycleQD.Cuda CycleQD.Onnx CycleQD.Tasks CycleQD.Segmentation CycleQD.Runs)
# Packages meant for others need the kernels in CycleQD.Cuda: without PTX, `pack` stops (unless
# CYCLEQD_SKIP_NVCC=1); `test` packs anyway, since its sample does not use CUDA.
cmd_pack() {
  local allow_no_ptx="${1:-0}"
  cmd_build
  if [ -z "$(ls "$ARTIFACTS"/ptx/*.ptx 2>/dev/null)" ]; then
    [ "${CYCLEQD_SKIP_NVCC:-0}" = 1 ] || [ "$allow_no_ptx" = 1 ] || die "pack: no PTX was built (nvcc missing), CycleQD.Cuda would have no kernels; run ./build.sh setup, or set CYCLEQD_SKIP_NVCC=1 to pack it without them"
    log "warning: no PTX built: CycleQD.Cuda is packed without kernels (it reports them missing at run time)"
  fi
  rm -rf "$ARTIFACTS/packages"; mkdir -p "$ARTIFACTS/packages"
  local p
  for p in "${PACKAGES[@]}"; do
    dotnet pack "src/Managed/$p/$p.csproj" -c "$CONFIG" --no-build -nologo -v:q -clp:NoSummary
  done
  log "packages in $ARTIFACTS/packages: $(cd "$ARTIFACTS/packages" && ls *.nupkg | tr '\n' ' ')"
}

# examples/embedding restored from the packages just written (never from project references),
# built and run; its output lines are checked. Writes a TRX-like counter file so the result counts
# in the closing line.
cmd_sample() {
  local results="$1" sample="$ROOT/examples/embedding" out rc=0
  # Same version, new bytes: the sample's own package folder must not keep the previous CycleQD.*.
  rm -rf "$sample"/obj/packages/cycleqd.* "$sample/bin" "$sample/obj/project.assets.json"
  dotnet build "$sample/EmbeddingSample.csproj" -c "$CONFIG" -nologo -v:q -clp:NoSummary || rc=$?
  if [ $rc -eq 0 ]; then
    out="$(cd "$sample" && timeout 300 dotnet bin/"$CONFIG"/net10.0/linux-x64/EmbeddingSample.dll "$ROOT" 2>&1)" || rc=$?
    printf '%s\n' "$out"
  fi
  local checks=0 failed=0
  sample_check() {
    checks=$((checks + 1))
    if ! printf '%s\n' "$out" | grep -Eq "$1"; then failed=$((failed + 1)); log "embedding sample: no line matches /$1/"; fi
  }
  if [ $rc -ne 0 ]; then
    log "embedding sample failed (exit $rc)"; failed=1; checks=1
  else
    sample_check '^synthetic: generations=20 elites=[1-9][0-9]* qd_score=[0-9.]+ best=(0\.[0-9]+|1\.0+)$'
    sample_check '^merge: method=task_arithmetic lambda=0\.7 code=(0\.[0-9]{4}|1\.0000) db=(0\.[0-9]{4}|1\.0000) os=(0\.[0-9]{4}|1\.0000)$'
    sample_check '^ask_tell: generations=20 elites=[1-9][0-9]* equal_to_push=true$'
  fi
  # Counted as tests in summarize_trx.
  printf '<Counters total="%d" passed="%d" failed="%d" />\n' "$checks" $((checks - failed)) "$failed" > "$results/embedding-sample.trx"
  [ $failed -eq 0 ]
}

cmd_test() {
  cmd_pack 1
  local results="$ARTIFACTS/test-results"
  rm -rf "$results"; mkdir -p "$results"
  local rc=0
  dotnet test --solution CycleQD.Native.sln -c "$CONFIG" --no-build \
      --results-directory "$results" --report-xunit-trx || rc=$?
  cmd_sample "$results" || rc=1
  summarize_trx "$results" || rc=1
  return $rc
}

# Sums the TRX reports (one per test project) into the single closing line. A project that
# produced no report (it crashed or did not start) counts as a failure.
summarize_trx() {
  local dir="$1" passed=0 failed=0 skipped=0 reports=0 f
  for f in "$dir"/*.trx; do
    [ -e "$f" ] || continue
    reports=$((reports + 1))
    local counters
    counters="$(grep -o '<Counters [^>]*>' "$f" | head -n 1)"
    get() { printf '%s' "$counters" | grep -o " $1=\"[0-9]*\"" | grep -o '[0-9]*' || echo 0; }
    passed=$((passed + $(get passed)))
    failed=$((failed + $(get failed) + $(get error) + $(get timeout) + $(get aborted)))
    skipped=$((skipped + $(get notExecuted)))
  done
  local projects
  # Every test project, and the embedding sample.
  projects=$(( $(ls tests/*/*.csproj | wc -l) + 1 ))
  if [ "$reports" -lt "$projects" ]; then
    log "only $reports of $projects test projects produced a report; counting each missing one as a failure"
    failed=$((failed + projects - reports))
  fi
  echo "$passed passed, $failed failed, $skipped skipped"
  [ "$failed" -eq 0 ]
}

# A folder that runs on a GPU machine with nothing but the NVIDIA driver and a CUDA toolkit:
#   bin/    the CLI published self-contained with invariant globalization and the framework
#           trimmed (TrimMode=partial: our assemblies and their reflection users, YamlDotNet and
#           System.Text.Json's reflection path, are kept whole); PTX embedded in CycleQD.Cuda.
#           ONNX Runtime's CUDA, TensorRT and shared provider libraries are left out (the CUDA one
#           alone is ~284 MB); inference in the bundle runs on ORT's CPU provider.
#   tests/  the CUDA test project published self-contained, so the GPU tests run there too.
#   lib/    this machine's OpenBLAS/LAPACKE (the CPU twins and the CPU backend need them).
#   ptx/, dev/ (the kernel dev harnesses, sm_90, static CUDA runtime), run-device-check.sh.
# cuBLAS/cuSOLVER come from the machine's CUDA install (searched under CUDA_HOME,
# /usr/local/cuda*/lib64 and LD_LIBRARY_PATH). The folder is shipped as
# artifacts/device-bundle.tar.xz, which must stay under 64 MiB.
cmd_device_bundle() {
  cmd_setup
  cmd_native
  [ -n "$(ls "$ARTIFACTS"/ptx/*.ptx 2>/dev/null)" ] || die "device-bundle: no PTX was built (nvcc missing); the bundle would have no kernels"
  local out="$ARTIFACTS/device-bundle"
  rm -rf "$out" "$out.tar.xz"; mkdir -p "$out/ptx" "$out/lib"
  dotnet publish src/Managed/CycleQD.Cli/CycleQD.Cli.csproj -c "$CONFIG" -r linux-x64 --self-contained true \
      -p:PublishTrimmed=true -p:TrimMode=partial -p:JsonSerializerIsReflectionEnabledByDefault=true \
      -p:TreatWarningsAsErrors=false -p:TrimmerSingleWarn=true \
      -p:InvariantGlobalization=true -p:DebugType=none -p:GenerateDocumentationFile=false \
      -o "$out/bin" -nologo -v:q -clp:NoSummary
  dotnet publish tests/CycleQD.Cuda.Tests/CycleQD.Cuda.Tests.csproj -c "$CONFIG" -r linux-x64 --self-contained true \
      -p:DebugType=none -p:GenerateDocumentationFile=false -o "$out/tests" -nologo -v:q -clp:NoSummary
  # Debugger, tracing and standalone-GC libraries of the runtime: not needed to run.
  # ONNX Runtime's CUDA provider (284 MB) travels apart, as parts (./build.sh device-provider);
  # its small loader, libonnxruntime_providers_shared.so, stays.
  local drop=(libonnxruntime_providers_cuda.so libonnxruntime_providers_tensorrt.so
              libmscordbi.so libmscordaccore.so libcoreclrtraceptprovider.so libclrgc.so libclrgcexp.so)
  for f in "${drop[@]}"; do rm -f "$out/bin/$f" "$out/tests/$f"; done
  rm -f "$out"/bin/*.pdb "$out"/bin/*.dbg "$out"/tests/*.pdb "$out"/tests/*.xml
  local lib
  for lib in liblapacke.so.3 libopenblas.so.0 liblapack.so.3 libblas.so.3 libgfortran.so.5 libquadmath.so.0 libtmglib.so.3; do
    cp -L "$(ldconfig -p | awk -v l="$lib" '$1 == l { print $NF; exit }')" "$out/lib/$lib" \
      || die "device-bundle: $lib not found (./build.sh setup installs OpenBLAS/LAPACKE)"
  done
  cp "$ARTIFACTS"/ptx/*.ptx "$out/ptx/"
  # The llm.c-style dev harnesses, linked for sm_90 (H100/H200) with the static CUDA runtime,
  # so they need only the driver there.
  local hostcc=()
  if command -v g++-11 >/dev/null 2>&1; then hostcc=(-DCMAKE_CUDA_HOST_COMPILER="$(command -v g++-11)"); fi
  cmake -S native -B "$ARTIFACTS/native-dev" -DCMAKE_CUDA_COMPILER="$(find_nvcc)" "${hostcc[@]}" \
        -DCYCLEQD_BUILD_DEV_HARNESSES=ON -DCYCLEQD_DEV_ARCH=90 -DPTX_OUTPUT_DIR="$ARTIFACTS/native-dev/ptx" >/dev/null
  cmake --build "$ARTIFACTS/native-dev" --target dev_harnesses -- -j"$(nproc)" >/dev/null
  mkdir -p "$out/dev"
  cp "$ARTIFACTS"/native-dev/dev/* "$out/dev/"
  cp scripts/run-device-check.sh "$out/run-device-check.sh"
  cp scripts/gpu-loop-check.sh "$out/gpu-loop-check.sh"
  cp scripts/device-steps.sh "$out/device-steps.sh"
  # A real Llama-3 tokenizer for the synthesized 8B set (realistic prompt lengths), when the shared
  # data is beside the checkout; without it the check uses the generated byte-level tokenizer.
  local tok="$ROOT/../shared/data/tokenizers/llama3"
  if [ -f "$tok/tokenizer.json" ]; then
    mkdir -p "$out/tokenizer-llama3"
    cp "$tok"/tokenizer.json "$tok"/tokenizer_config.json "$out/tokenizer-llama3/"
    [ -f "$tok/chat_template.jinja" ] && cp "$tok/chat_template.jinja" "$out/tokenizer-llama3/"
  fi
  chmod +x "$out/run-device-check.sh" "$out/gpu-loop-check.sh" "$out/bin/cycleqd" "$out/tests/CycleQD.Cuda.Tests"
  LD_LIBRARY_PATH="$out/lib" "$out/bin/cycleqd" doctor >/dev/null || die "the bundled CLI does not start"
  log "compressing the bundle (xz)"
  tar -C "$ARTIFACTS" -cf - device-bundle | xz -T0 -6 > "$out.tar.xz"
  local bytes
  bytes=$(stat -c %s "$out.tar.xz")
  log "device bundle: $out.tar.xz ($((bytes / 1048576)) MiB; $(du -sm "$out" | cut -f1) MiB unpacked)"
  [ "$bytes" -lt $((64 * 1048576)) ] || die "device bundle is $((bytes / 1048576)) MiB, over the 64 MiB budget"
  # A transfer also carries the working tree (about 16 MiB): the bundle travels as parts of 40 MiB too.
  rm -rf "$ARTIFACTS/device-bundle-parts"; mkdir -p "$ARTIFACTS/device-bundle-parts"
  split -b 40M -d -a 2 "$out.tar.xz" "$ARTIFACTS/device-bundle-parts/part-"
  (cd "$ARTIFACTS/device-bundle-parts" && sha256sum part-* > SHA256SUMS)
  log "on the GPU machine: tar -xJf device-bundle.tar.xz && device-bundle/run-device-check.sh (writes device-check.log)"
}

# ONNX Runtime's CUDA provider, too large for one transfer to a GPU machine, as xz parts of at
# most 40 MiB (a transfer also carries the working tree, about 16 MiB) with their sha256 (artifacts/ort-cuda-parts/); docs/cuda.md says how to send them.
cmd_device_provider() {
  cmd_setup
  local so
  so=$(find "${NUGET_PACKAGES:-$HOME/.nuget/packages}/microsoft.ml.onnxruntime.gpu.linux" -path '*linux-x64/native/libonnxruntime_providers_cuda.so' 2>/dev/null | sort | tail -1)
  [ -n "$so" ] || { dotnet restore CycleQD.Native.sln -nologo -v:q >/dev/null; so=$(find "${NUGET_PACKAGES:-$HOME/.nuget/packages}/microsoft.ml.onnxruntime.gpu.linux" -path '*linux-x64/native/libonnxruntime_providers_cuda.so' | sort | tail -1); }
  [ -n "$so" ] || die "device-provider: libonnxruntime_providers_cuda.so not found in the NuGet cache"
  local out="$ARTIFACTS/ort-cuda-parts"
  rm -rf "$out"; mkdir -p "$out"
  log "compressing $so ($(( $(stat -c %s "$so") / 1048576 )) MiB, xz -9)"
  xz -T0 -9 -c "$so" | split -b 40M -d -a 2 - "$out/part-"
  (cd "$out" && sha256sum part-* > SHA256SUMS)
  log "ONNX Runtime CUDA provider: $(ls "$out"/part-* | wc -l) parts in $out ($(du -sm "$out" | cut -f1) MiB)"
}

cmd_run() {
  cmd_build
  # The embedded default: CycleQD on the shipped TinySkills demo (models/tinyskills: an instruct
  # base and code/db/os experts), each candidate scored on the valid splits with the ONNX
  # generator on the CPU, then the final merge and the test-split table (base, experts, task
  # arithmetic, TIES, best elites, final model). Output goes to runs/tinyskills-<time>/.
  ./cycleqd doctor
  local out
  out="$ROOT/runs/tinyskills-$(date -u +%Y%m%d-%H%M%S)"
  ./cycleqd run examples/tinyskills.yaml --out "$out"
  log "run directory: $out (archive.json, metrics.jsonl, elites/, plots/, final/, report.json, summary.md)"
  [ -f "$out/summary.md" ] && cat "$out/summary.md"
}

# BenchmarkDotNet (bench/CycleQD.Benchmarks): merge throughput vs a plain copy, full vs randomized
# SVD. Extra arguments go to BenchmarkDotNet (e.g. ./build.sh bench --filter '*Svd*').
cmd_bench() {
  cmd_build
  local args=("$@")
  [ ${#args[@]} -eq 0 ] && args=(--filter '*')
  dotnet run --project bench/CycleQD.Benchmarks -c "$CONFIG" --no-build -- \
      --artifacts "$ARTIFACTS/bench" "${args[@]}"
  log "reports in $ARTIFACTS/bench/results"
}

case "${1:-}" in
  setup) cmd_setup ;;
  build) cmd_build ;;
  pack) cmd_pack ;;
  test) cmd_test ;;
  run) cmd_run ;;
  bench) shift; cmd_bench "$@" ;;
  device-bundle) cmd_device_bundle ;;
  device-provider) cmd_device_provider ;;
  *) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
