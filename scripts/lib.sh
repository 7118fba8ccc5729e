# Shared by scripts/setup, scripts/test and scripts/demo (sourced, not run).
# shellcheck shell=bash

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv"
STAGE_NAMES=()
STAGE_TIMES=()
STAGE_RESULTS=()

# stage NAME CMD...: run CMD, print how long it took, record the outcome; never exits.
stage() {
  local name=$1 start end rc
  shift
  echo
  echo "=== stage: $name"
  start=$(date +%s.%N)
  "$@"
  rc=$?
  end=$(date +%s.%N)
  STAGE_NAMES+=("$name")
  STAGE_TIMES+=("$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')")
  STAGE_RESULTS+=("$rc")
  echo "=== stage: $name finished in ${STAGE_TIMES[-1]} s (exit $rc)"
  return "$rc"
}

# stage_summary: a table of every stage and a closing "N passed, N failed" line; returns 1 if any failed.
stage_summary() {
  local i passed=0 failed=0
  echo
  printf '%-28s %9s  %s\n' "stage" "seconds" "result"
  for i in "${!STAGE_NAMES[@]}"; do
    if [ "${STAGE_RESULTS[$i]}" = 0 ]; then
      passed=$((passed + 1)); printf '%-28s %9s  %s\n' "${STAGE_NAMES[$i]}" "${STAGE_TIMES[$i]}" ok
    else
      failed=$((failed + 1)); printf '%-28s %9s  %s\n' "${STAGE_NAMES[$i]}" "${STAGE_TIMES[$i]}" "FAILED (exit ${STAGE_RESULTS[$i]})"
    fi
  done
  echo "stages: $passed passed, $failed failed"
  [ "$failed" = 0 ]
}

# use_engine: a Docker engine for this shell (a private one if none answers) and the molecule variables.
use_engine() {
  local env_lines
  env_lines="$("$VENV/bin/python" -m harness env)" || return 1
  eval "$env_lines"
}

# stop_engine_on_exit: stop the private engine when this script ends, unless HARNESS_KEEP_ENGINE=1.
stop_engine_on_exit() {
  if [ "${HARNESS_KEEP_ENGINE:-0}" != 1 ]; then
    trap '"$VENV/bin/python" -m harness engine stop' EXIT
  fi
}
