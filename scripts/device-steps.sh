# Sourced by the device scripts (run-device-check.sh, gpu-loop-check.sh): `say` prints a line and
# appends it to $LOG; `step LIMIT NAME CMD...` runs CMD with its own time limit, logs its output and
# its exit status, and returns that status, so one hung or failing step cannot eat the others.
# TOTAL_LIMIT (seconds since the script started, optional): the whole script's budget. A step gets at
# most what is left of it, less TOTAL_RESERVE (default 20 s, for the summary), and is skipped (status
# 125) when nothing is left, so a script under an outer time limit still ends with its table.
say() { echo "$*" | tee -a "$LOG"; }
step() {
  local limit="$1" name="$2"; shift 2
  if [ -n "${TOTAL_LIMIT:-}" ]; then
    local left=$(( TOTAL_LIMIT - SECONDS - ${TOTAL_RESERVE:-20} ))
    if [ "$left" -lt 5 ]; then
      say ""
      say "## $name: skipped, the script's budget of ${TOTAL_LIMIT} s is spent"
      return 125
    fi
    [ "$left" -lt "$limit" ] && limit=$left
  fi
  say ""
  say "## $name (limit ${limit}s) $(date -u +%H:%M:%S)"
  local t0=$SECONDS
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$LOG"
  local rc=${PIPESTATUS[0]}
  say "## $name: exit $rc after $((SECONDS - t0)) s"
  return "$rc"
}
