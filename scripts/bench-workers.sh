#!/usr/bin/env bash
# Scaling of a distributed run: the synthetic problem with a simulated evaluation cost (a plain
# sleep per candidate, model.synthetic.evaluation_seconds), on 1, 2, 4 and 8 workers of this
# machine (`cycleqd worker`, CPU backend) sharing a private redis-server, with in_flight = N.
# Per N: children per second over the steady part of the run (first to last child's commit time in
# metrics.jsonl, so start-up and the experts' scoring are left out), the speed-up over N = 1, the
# wall time per child beyond the ideal SECONDS / N, and the coordinator's own CPU time (user +
# system of the `cycleqd run` process alone; the workers and Redis are separate processes) per child.
# Row 0 is the same experiment in one process (no workers, in_flight 1): its CPU per child is what
# breeding and scoring cost without distribution, so the coordinator's own overhead is the
# difference. Every process runs with --threads 1 (OpenBLAS otherwise spins its idle threads, which
# on a 2-core machine shared by up to 9 processes measures the spinning, not the work).
# Usage: scripts/bench-workers.sh [GENERATIONS (default 60)] [SECONDS (default 1)]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
GENS="${1:-60}"
SLEEP="${2:-1}"
WORK="$(mktemp -d /tmp/cycleqd-bench-workers-XXXXXX)"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$PORT" --bind 127.0.0.1 --save "" --appendonly no >"$WORK/redis.log" 2>&1 &
REDIS=$!
PIDS=()
cleanup() { kill "${PIDS[@]}" "$REDIS" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
sleep 0.5
URL="redis://127.0.0.1:$PORT"
echo "$(date -u +%Y-%m-%dT%H:%MZ) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); $GENS generations, ${SLEEP} s per evaluation"
printf '%-8s %-12s %-9s %-22s %s\n' workers children/s speed-up "overhead/child (ms)" "coordinator CPU/child (ms)"
for n in 0 1 2 4 8; do
  sed -e "s/^generations: .*/generations: $GENS/" -e "s/^in_flight: .*/in_flight: $(( n > 0 ? n : 1 ))/" \
      -e "s/^    seed: 7$/    seed: 7\n    evaluation_seconds: $SLEEP/" "$ROOT/examples/synthetic.yaml" > "$WORK/exp-$n.yaml"
  PIDS=()
  for i in $(seq 1 "$n"); do
    "$ROOT/cycleqd" worker --redis "$URL" --run "$WORK/run-$n" --name "b$n-$i" --threads 1 >"$WORK/worker-$n-$i.log" 2>&1 &
    PIDS+=($!)
  done
  WORKERS=(); [ "$n" -gt 0 ] && WORKERS=(--workers "$URL")
  /usr/bin/time -f "%U %S" -o "$WORK/time-$n" "$ROOT/cycleqd" run "$WORK/exp-$n.yaml" --out "$WORK/run-$n" --device cpu --threads 1 "${WORKERS[@]}" -q >/dev/null 2>"$WORK/err-$n" \
    || { cat "$WORK/err-$n"; exit 1; }
  if [ "${#PIDS[@]}" -gt 0 ]; then kill "${PIDS[@]}" 2>/dev/null || true; wait "${PIDS[@]}" 2>/dev/null || true; fi
  python3 - "$WORK/run-$n/metrics.jsonl" "$WORK/time-$n" "$n" "$SLEEP" "$WORK/rate-1" <<'PY'
import json, os, sys
from datetime import datetime
metrics, timef, n, sleep, basef = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
t = [datetime.fromisoformat(json.loads(l)["timing"]["finished_utc"].replace("Z", "+00:00")) for l in open(metrics)]
span = (t[-1] - t[0]).total_seconds()
rate = (len(t) - 1) / span
user, system = map(float, open(timef).read().split()[-2:])
if n <= 1:
    open(basef, "w").write(str(rate))
base = float(open(basef).read())
label = "0 (one process)" if n == 0 else str(n)
print(f"{label:<8} {rate:<12.3f} {rate / base:<9.2f} {1000 * (span / (len(t) - 1) - sleep / max(n, 1)):<22.1f} {1000 * (user + system) / len(t):.1f}")
PY
done
