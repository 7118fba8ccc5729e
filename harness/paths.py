"""Where the harness keeps its state: one cache folder under the repository root."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

#: Cache root (engine data, rootfs builds, saved images); override with HARNESS_CACHE.
CACHE = Path(os.environ.get("HARNESS_CACHE", REPO_ROOT / ".cache" / "harness"))

#: Engine runtime files live under /run: unix-socket paths must stay short (< 108 bytes).
RUN_DIR = Path(os.environ.get("HARNESS_RUN_DIR", "/run/appliance-harness"))
