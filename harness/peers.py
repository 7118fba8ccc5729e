"""Finding the real DICOM peers (dcmtk, Orthanc) and the environment they run in.

Shared by the harness's round trip, the adapter tests and the benchmarks.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def system_tool(binary: str) -> str | None:
    """Path of ``binary`` on PATH outside this virtualenv, or None.

    pynetdicom installs its own ``storescu``/``echoscu``/``storescp`` into the virtualenv's bin;
    we mean dcmtk's, so the virtualenv's folder is skipped.
    """
    venv_bin = Path(sys.prefix, "bin").resolve()
    dirs = [d for d in os.environ.get("PATH", "").split(os.pathsep) if d and Path(d).resolve() != venv_bin]
    return shutil.which(binary, path=os.pathsep.join(dirs))


def nodelay_env() -> dict[str, str]:
    """Environment for dcmtk/Orthanc peers: Nagle off (``TCP_NODELAY=1``), else ~45 ms per instance."""
    return {**os.environ, "TCP_NODELAY": "1"}
