"""Run the repository's Ansible modules for real on this machine, as a play would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def run_module(name: str, args: dict[str, Any], check: bool = False) -> dict[str, Any]:
    """The result of module ``name`` run with ``args`` through ``ansible`` on localhost (its
    module_utils shipped as Ansible ships them; ``check`` runs it in check mode)."""
    cmd = ["ansible", "localhost", "-i", "localhost,", "-c", "local",
           "-e", f"ansible_python_interpreter={sys.executable}", "-m", name, "-a", json.dumps(args),
           *(["--check"] if check else [])]
    env = {**os.environ, "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1", "ANSIBLE_STDOUT_CALLBACK": "json",
           "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    try:
        result: dict[str, Any] = json.loads(proc.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]
    except (ValueError, KeyError, IndexError) as exc:
        raise AssertionError(f"{' '.join(cmd)} gave no result:\n{proc.stdout}\n{proc.stderr}") from exc
    return result
