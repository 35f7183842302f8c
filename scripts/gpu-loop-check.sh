#!/usr/bin/env bash
# The GPU check of the whole CycleQD loop on an 8B-shaped model, run from an unpacked device bundle
# (no .NET needed) on a GPU machine with the NVIDIA driver and a pip-installed PyTorch + transformers
# and no network. It prints one table at the end (and writes it to $WORK/loop-check.md):
#   - host→device copy bandwidth (bench kernels), the reference for the decode target;
#   - `cycleqd synthesize` of Llama-3-8B (base + 3 experts, bf16): seconds;
#   - `generate check`: the fused graph's logits against the plain graph's on CUDA (stories260K in float16,
#     the 8B set in bfloat16), and the TinySkills OS expert's batched accuracy with each graph;
#   - generation tokens/s at batch 1, 16 and 64: `cycleqd generate bench --device cuda --dtype bfloat16`
#     with the fused graph (and the plain graph at 1 and 64) beside transformers' generate
#     (scripts/hf-generate-bench.py) on the same model, dtype and batches;
#   - 3 generations of CycleQD with --device cuda on the synthesized set, scored on TinySkills prompts
#     (scores of random weights mean nothing: this is a pipeline and cost check): per child merge+mutation
#     (breed_s), bind_s and evaluate_s from metrics.jsonl, and the GPU's peak memory (nvidia-smi, sampled
#     every 200 ms, so a lower bound of the true peak);
#   - the synthetic experiment on --device cuda and --device cpu, archives compared (same cells,
#     qualities within 1e-4): the CUDA-vs-CPU run comparison.
# ONNX Runtime's CUDA provider (libonnxruntime_providers_cuda.so, 284 MB) does not fit one transfer:
# it arrives as xz parts made by `./build.sh device-provider` (docs/cuda.md, "Getting ONNX Runtime's
# CUDA provider onto a GPU machine"); this script joins them from $CQD_ORT_PARTS and checks their sha256.
# Environment: WORK (default /tmp/cqd-loop), SHM (default /dev/shm/cqd-loop: the base goes there, the
# experts to WORK, so 64 GB fit beside a 64 GiB disk), CQD_ORT_PARTS, REPO (default $PWD: models/tinyskills
# and examples/ come from there), SHAPE (default llama3-8b; tiny for a rehearsal anywhere), LAYERS (default:
# the shape's own), STEP_LIMIT_<name> (seconds), TOTAL_LIMIT (the whole script, default 570 s: steps are
# shortened or skipped to end in time with the table; ordered so the loop's own rows come first), OUT (the
# log, the table and the run's metrics.jsonl are copied there at the end).
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="${REPO:-$PWD}"
WORK="${WORK:-/tmp/cqd-loop}"
SHM="${SHM:-/dev/shm/cqd-loop}"
PARTS="${CQD_ORT_PARTS:-$HOME/cqd-ort-parts}"
# The whole check fits one 10-minute device call: later steps are shortened or skipped, the table printed.
TOTAL_LIMIT="${TOTAL_LIMIT:-570}"
CLI="$HERE/bin/cycleqd"
mkdir -p "$WORK"
LOG="$WORK/loop-check.log"
: > "$LOG"
# shellcheck source=device-steps.sh
source "$HERE/device-steps.sh"
declare -A ROW
row() { ROW["$1"]="$2"; }

# Libraries: OpenBLAS from the bundle; the CUDA 13 runtime, cuBLAS, cuRAND, cuSOLVER and cuDNN 9 that
# ONNX Runtime's CUDA provider and our binding need, from PyTorch's nvidia-* pip packages.
export LD_LIBRARY_PATH="$HERE/lib:$HERE/bin${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
for lib in libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libcurand.so.10 libcudnn.so.9 libcusolver.so.12 libcusparse.so.12 libnvJitLink.so.13; do
  d=$(python3 - "$lib" <<'PY' 2>/dev/null
import os, sys
try:
    import nvidia
except ImportError:
    sys.exit(0)
for root in nvidia.__path__:
    for dirpath, _, files in os.walk(root):
        if sys.argv[1] in files:
            print(dirpath); sys.exit(0)
PY
)
  [ -n "$d" ] && case ":$LD_LIBRARY_PATH:" in *":$d:"*) ;; *) LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$d" ;; esac
done
say "# GPU loop check $(date -u '+%Y-%m-%d %H:%M UTC') on $(hostname)"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | tee -a "$LOG"
say "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"

if [ ! -f "$HERE/bin/libonnxruntime_providers_cuda.so" ]; then
  if ls "$PARTS"/part-* >/dev/null 2>&1; then
    (cd "$PARTS" && sha256sum -c --quiet SHA256SUMS) 2>&1 | tee -a "$LOG" \
      && cat "$PARTS"/part-* | xz -d > "$HERE/bin/libonnxruntime_providers_cuda.so" \
      && say "ONNX Runtime CUDA provider joined from $(ls "$PARTS"/part-* | wc -l) parts"
  else
    say "ONNX Runtime CUDA provider: no parts in $PARTS; generation steps will report it missing"
  fi
fi

step "${STEP_LIMIT_doctor:-30}" "cycleqd doctor" "$CLI" doctor

# The fused graph (GroupQueryAttention with one in-place KV buffer) against the plain graph on the GPU:
# `generate check` prefills 4 prompts of different lengths and decodes 16 steps with the same tokens in
# both, comparing the logits (float16 on stories260K: head_dim 8, RotaryEmbedding operators; the 8B
# set below: head_dim 128, the rotary inside attention).
STORIES="$REPO/models/stories260K"
if [ -f "$STORIES/config.json" ]; then
  step "${STEP_LIMIT_graphs:-60}" "generate check, stories260K, CUDA float16" "$CLI" generate check --model "$STORIES" --device cuda --dtype float16
  row check_small "$(grep -o 'fused vs plain: worst relative error [^ ]*, tolerance [^ ]* for Float16: [A-Z]*' "$LOG" | tail -1)"
fi

# Batched greedy generation on the GPU: the TinySkills OS expert's valid accuracy (96.5 % in float32 on
# the CPU, models/tinyskills/README.md) with each graph in float16 on CUDA and, as the reference, on the CPU.
TSK="$REPO/models/tinyskills"
if [ -d "$TSK/expert-os" ]; then
  scores=()
  for g in "cuda fused float16" "cuda plain float16" "cpu fused float32"; do
    read -r dev graph dtype <<< "$g"
    rm -f "$WORK/eval-$dev-$graph.jsonl"
    step "${STEP_LIMIT_graphs:-60}" "eval tinyskills/os valid, $dev $dtype --graph $graph" \
      "$CLI" eval --task tinyskills/os --split valid --model "$TSK/expert-os" --tinyskills "$TSK" --device "$dev" --dtype "$dtype" --graph "$graph" \
      --output "$WORK/eval-$dev-$graph.jsonl"
    out="$WORK/eval-$dev-$graph.jsonl"
    if [ -s "$out" ]; then
      scores+=("$dev $graph $dtype: $(grep -c '"correct":true' "$out")/$(wc -l < "$out") correct")
    else
      scores+=("$dev $graph $dtype: did not finish (see its step)")
    fi
  done
  row evals "$(printf '%s; ' "${scores[@]}" | sed 's/; $//')"
fi
step "${STEP_LIMIT_copy:-60}" "copy bandwidth (bench kernels 4096x4096)" "$CLI" bench kernels --shapes 4096x4096 --no-svd
row copy "$(grep -m1 -o 'device-to-device copy: [0-9]* GB/s' "$LOG")"

# The set: base on the RAM disk, experts on disk (the base's bytes depend only on shape and seed).
rm -rf "$SHM" "$WORK/experts" "$WORK/run" "$WORK/synthetic-"*
mkdir -p "$(dirname "$SHM")"
TOK=(); [ -f "$HERE/tokenizer-llama3/tokenizer.json" ] && TOK=(--tokenizer "$HERE/tokenizer-llama3")
LAY=(); [ -n "${LAYERS:-}" ] && LAY=(--layers "$LAYERS")
SHAPE="${SHAPE:-llama3-8b}"
t0=$SECONDS
step "${STEP_LIMIT_synth:-240}" "synthesize $SHAPE base" "$CLI" synthesize --shape "$SHAPE" "${LAY[@]}" --experts 0 --out "$SHM" "${TOK[@]}" \
  && step "${STEP_LIMIT_synth:-240}" "synthesize $SHAPE experts" "$CLI" synthesize --shape "$SHAPE" "${LAY[@]}" --experts 3 --skip-base --out "$WORK/experts" "${TOK[@]}"
row synth "$((SECONDS - t0)) s for base + 3 experts ($(du -sh "$SHM" "$WORK/experts" 2>/dev/null | awk '{print $1}' | paste -sd+))"
BASE="$SHM/base"

cat > "$WORK/loop.yaml" <<YAML
name: gpu-loop-check
seed: 1
generations: 3
tasks: [tinyskills/code, tinyskills/db, tinyskills/os]
model:
  base: $BASE
  experts:
    tinyskills/code: $WORK/experts/expert-1
    tinyskills/db: $WORK/experts/expert-2
    tinyskills/os: $WORK/experts/expert-3
evaluation: { split: valid, limit: 16, tinyskills: $REPO/models/tinyskills }
archive: { bins: 15, bounds: { tinyskills/code: [0, 1], tinyskills/db: [0, 1], tinyskills/os: [0, 1] } }
mutation: { kind: svd, svd_rank: 256 }
final_merge: { enabled: false }
YAML
step 60 "dry run" "$CLI" run "$WORK/loop.yaml" --dry-run --device cuda
nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 > "$WORK/gpu-memory.csv" 2>/dev/null &
SMI=$!
step "${STEP_LIMIT_run:-300}" "cycleqd run, 3 generations, --device cuda" "$CLI" run "$WORK/loop.yaml" --out "$WORK/run" --device cuda
kill "$SMI" 2>/dev/null
peak=$(sort -n "$WORK/gpu-memory.csv" 2>/dev/null | tail -1)
[ -n "$peak" ] && row peak "$peak MiB (nvidia-smi memory.used, 200 ms samples)"
if [ -f "$WORK/run/metrics.jsonl" ]; then
  row children "$(python3 - "$WORK/run/metrics.jsonl" <<'PY'
import json, sys
rows = [json.loads(l)["timing"] for l in open(sys.argv[1])]
print("; ".join(f"gen {i}: breed {t['breed_s']:.2f} s, bind {t.get('bind_s', float('nan')):.3f} s, evaluate {t['evaluate_s']:.2f} s, backend peak {t.get('peak_device_bytes', 0) / 2**30:.2f} GiB" for i, t in enumerate(rows)))
PY
)"
fi

step "${STEP_LIMIT_graphs:-60}" "generate check, $SHAPE base, CUDA bfloat16" "$CLI" generate check --model "$BASE" --device cuda --dtype bfloat16 --steps 8
row check_big "$(grep -o 'fused vs plain: worst relative error [^ ]*, tolerance [^ ]* for BFloat16: [A-Z]*' "$LOG" | tail -1)"
step "${STEP_LIMIT_ours:-150}" "cycleqd generate bench (CUDA, bfloat16, fused graph)" "$CLI" generate bench --model "$BASE" --device cuda --dtype bfloat16 --graph fused --batches 1,16,64 --new-tokens 64 --repeats 2
step "${STEP_LIMIT_plain:-90}" "cycleqd generate bench (CUDA, bfloat16, plain graph)" "$CLI" generate bench --model "$BASE" --device cuda --dtype bfloat16 --graph plain --batches 1,64 --new-tokens 64 --repeats 1
step "${STEP_LIMIT_hf:-180}" "transformers generate (bfloat16)" python3 "$REPO/scripts/hf-generate-bench.py" --model "$BASE" --batches 1,16,64 --new-tokens 64 --repeats 2

EXAMPLES="$REPO/examples"
for dev in cuda cpu; do
  step "${STEP_LIMIT_synthetic:-90}" "synthetic.yaml --device $dev" "$CLI" run "$EXAMPLES/synthetic.yaml" --out "$WORK/synthetic-$dev" --device "$dev"
done
row compare "$(python3 - "$WORK/synthetic-cpu/archive.json" "$WORK/synthetic-cuda/archive.json" <<'PY' 2>&1
import json, os, sys
missing = [p for p in sys.argv[1:] if not os.path.exists(p)]
if missing:
    print("not compared: no " + ", ".join(missing)); sys.exit(0)
def cells(p):
    d = json.load(open(p))
    return {(a["task"], json.dumps(c["cell"])): c["quality"] for a in d["archives"] for c in a["cells"]}
cpu, gpu = cells(sys.argv[1]), cells(sys.argv[2])
worst = max((abs(cpu[k] - gpu[k]) for k in cpu if k in gpu), default=float("nan"))
same = set(cpu) == set(gpu)
print(f"{'PASS' if same and worst <= 1e-4 else 'FAIL'}: {len(cpu)} cells on cpu, {len(gpu)} on cuda, same cells {same}, largest quality difference {worst:.2e}")
PY
)"

{
  echo ""
  echo "| what | measured |"
  echo "|---|---|"
  echo "| GPU | $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null) |"
  echo "| copy bandwidth | ${ROW[copy]:-not measured} |"
  echo "| synthesize $SHAPE${LAYERS:+ ($LAYERS layers)} | ${ROW[synth]:-not measured} |"
  echo "| fused vs plain graph logits, stories260K float16 (generate check) | ${ROW[check_small]:-not run (see its step)} |"
  echo "| fused vs plain graph logits, $SHAPE bfloat16 (generate check) | ${ROW[check_big]:-not run (see its step)} |"
  echo "| tinyskills/os valid accuracy, batched (96.5 % on the CPU in float32) | ${ROW[evals]:-not run} |"
  echo "| generate tokens/s, cycleqd (fused, plain) vs transformers | see the three tables above (64 new tokens; bfloat16) |"
  echo "| per child (3 generations) | ${ROW[children]:-the run did not finish (see its step)} |"
  echo "| peak GPU memory during the run | ${ROW[peak]:-not measured} |"
  echo "| CUDA vs CPU synthetic run | ${ROW[compare]:-not run} |"
} | tee -a "$LOG" > "$WORK/loop-check.md"
# Under the device tool, what lands in $OUT comes back.
if [ -n "${OUT:-}" ] && [ -d "$OUT" ]; then
  cp "$LOG" "$WORK/loop-check.md" "$OUT/" 2>/dev/null
  [ -f "$WORK/run/metrics.jsonl" ] && cp "$WORK/run/metrics.jsonl" "$OUT/run-metrics.jsonl"
fi
