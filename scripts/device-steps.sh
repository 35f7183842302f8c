# Sourced by the device scripts (run-device-check.sh, gpu-loop-check.sh): `say` prints a line and
# appends it to $LOG; `step LIMIT NAME CMD...` runs CMD with its own time limit, logs its output and
# its exit status, and returns that status, so one hung or failing step cannot eat the others.
say() { echo "$*" | tee -a "$LOG"; }
step() {
  local limit="$1" name="$2"; shift 2
  say ""
  say "## $name (limit ${limit}s) $(date -u +%H:%M:%S)"
  local t0=$SECONDS
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$LOG"
  local rc=${PIPESTATUS[0]}
  say "## $name: exit $rc after $((SECONDS - t0)) s"
  return "$rc"
}
