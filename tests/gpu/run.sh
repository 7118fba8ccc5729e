#!/usr/bin/env bash
# GPU checks for a real NVIDIA machine, offline: tests/gpu/run.sh [--fetch-wheels]
#
# 1. check_gpu.py (python3 only): PCI scan, NVML through ctypes, driver status and mismatch diagnosis,
#    open/proprietary choice, fabric manager, preflight's thresholds.
# 2. gpu-checks.yml (needs ansible-core): the same through the roles' modules and preflight's gpu.yml.
#    ansible-playbook is taken from .venv, else PATH, else installed offline into a scratch venv from
#    .cache/gpu-wheels, which `--fetch-wheels` fills on a machine with network (carry it to the GPU machine).
# Exit: 0 all passed, 1 a check failed, 77 no NVIDIA GPU here (nothing checked).
set -uo pipefail
cd "$(dirname "$0")/../.."
wheels=.cache/gpu-wheels
if [ "${1:-}" = --fetch-wheels ]; then
  # For whichever Python 3.11-3.14 the GPU machine has (ansible-core 2.19 needs 3.11 or later).
  for version in 3.11 3.12 3.13 3.14; do
    python3 -m pip download -q --dest "$wheels" --only-binary=:all: --python-version "$version" \
      --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_34_x86_64 \
      "ansible-core>=2.19,<2.20" || exit 1
  done
  exit 0
fi

echo "== check_gpu.py"
python3 tests/gpu/check_gpu.py
rc=$?
[ "$rc" = 77 ] && exit 77

echo "== gpu-checks.yml"
playbook=""
if [ -x .venv/bin/ansible-playbook ]; then
  playbook=.venv/bin/ansible-playbook
elif command -v ansible-playbook >/dev/null; then
  playbook=$(command -v ansible-playbook)
elif [ -d "$wheels" ]; then
  scratch=$(mktemp -d)
  python3 -m venv "$scratch/venv" && "$scratch/venv/bin/pip" install -q --no-index --find-links "$wheels" \
    "ansible-core>=2.19,<2.20" && playbook="$scratch/venv/bin/ansible-playbook"
fi
if [ -z "$playbook" ]; then
  echo "SKIP gpu-checks.yml: no ansible-playbook here and no $wheels (run tests/gpu/run.sh --fetch-wheels where"
  echo "     there is network, and bring $wheels along)"
  exit "$rc"
fi
ANSIBLE_LIBRARY=plugins/modules ANSIBLE_MODULE_UTILS=plugins/module_utils ANSIBLE_ROLES_PATH=roles \
  "$playbook" -i localhost, -c local tests/gpu/gpu-checks.yml
prc=$?
[ "$rc" = 0 ] && [ "$prc" = 0 ]
