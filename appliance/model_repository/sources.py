"""Where trained weights come from: packages on PyPI, fetched with pip's own client and cached.

Nothing trained is committed to this repository. The liver model's weights ship inside the
``pyliverlesionseg`` 0.3 wheel (Apache-2.0); :func:`liver_wheel` fetches it with
``pip download --no-deps`` into a cache folder. Hosts without PyPI get the wheel from the Ansible
controller, which fetches it the same way and copies it over (roles/triton).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

LIVER_WHEEL = "pyliverlesionseg==0.3"


class SourceError(RuntimeError):
    """A package could not be fetched."""


def default_cache() -> Path:
    """``$APPLIANCE_CACHE``, else ``$XDG_CACHE_HOME/appliance``, else ``~/.cache/appliance``."""
    if "APPLIANCE_CACHE" in os.environ:
        return Path(os.environ["APPLIANCE_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "appliance"


def pip_download(requirement: str, dest: Path, *options: str) -> Path:
    """The file ``pip download --no-deps`` fetches for ``requirement`` (``name==version``) into ``dest``.

    A file of that name and version already in ``dest`` is returned without asking the index;
    pip keeps its own HTTP cache as well, so another folder on the same machine reads it from there.

    Raises:
        SourceError: pip failed (no index reachable, no such release).
    """
    name, _, version = requirement.partition("==")
    stem = f"{name.replace('-', '_').lower()}_{version}"
    dest.mkdir(parents=True, exist_ok=True)

    def present() -> Path | None:
        found = sorted(p for p in dest.iterdir()
                       if p.name.lower().replace("-", "_").startswith((f"{stem}_", f"{stem}.tar", f"{stem}.zip")))
        return found[0] if found else None

    cached = present()
    if cached is not None:
        return cached
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
           "--dest", str(dest), *options, requirement]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    got = present()
    if proc.returncode != 0 or got is None:
        raise SourceError(f"pip download {requirement} failed (exit {proc.returncode}):\n"
                          f"{(proc.stdout + proc.stderr)[-2000:]}")
    return got


def liver_wheel(cache: Path | None = None) -> Path:
    """The pyliverlesionseg 0.3 wheel, fetched once into ``cache/packages``.

    The wheel declares Python 3.6 and TensorFlow 1.x; it is never installed, only read.
    """
    return pip_download(LIVER_WHEEL, (cache or default_cache()) / "packages", "--only-binary", ":all:",
                        "--python-version", "3.6", "--ignore-requires-python")
