#!/usr/bin/env bash
# Times, in one run, a fresh converge of site.yml on a new sandbox host and an idempotent re-run
# (which must report changed=0), then prints both side by side with the load average. The controller's
# bundle cache (.cache/bundles) is kept: delete it first to include building the wheel bundle.
# Usage (root, from a checkout): benchmarks/site_converge.sh
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
cd "$REPO"
export PATH="$VENV/bin:$PATH"
use_engine
python -m harness images 24.04 >/dev/null
python -m harness sandbox down >/dev/null 2>&1 || true
python -m harness sandbox up

run() {  # run LOG: converge and print the seconds it took
  local start=$(date +%s.%N)
  ansible-playbook site.yml -i inventory/sandbox > "$1" 2>&1 || { tail -40 "$1"; exit 1; }
  awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }'
}
mkdir -p .cache/benchmarks
fresh=$(run .cache/benchmarks/site-fresh.log)
again=$(run .cache/benchmarks/site-again.log)
recap=$(grep -E '^appliance-sandbox +:' .cache/benchmarks/site-again.log)
changed=$(sed -E 's/.*changed=([0-9]+).*/\1/' <<< "$recap")
printf '\n%-44s %8s\n' "site.yml on the sandbox (Ubuntu 24.04)" seconds
printf '%-44s %8s\n' "fresh host" "$fresh" "re-run (changed=$changed)" "$again"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); logs in .cache/benchmarks/"
python -m harness sandbox down >/dev/null
[ "$changed" = 0 ] || { echo "re-run changed $changed task(s): not idempotent"; exit 1; }
