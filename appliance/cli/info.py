"""``appliance info``: print the package version and where its dependencies come from."""

from __future__ import annotations

import argparse
import importlib.metadata
import json

from appliance import __version__

_DEPENDENCIES = ("pynetdicom", "pydicom", "SimpleITK", "highdicom", "tritonclient", "nvidia-ml-py", "numpy")


def versions() -> dict[str, str | None]:
    """Installed version of the appliance and each runtime dependency (None when missing)."""
    found: dict[str, str | None] = {"appliance": __version__}
    for name in _DEPENDENCIES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def _run(args: argparse.Namespace) -> int:
    print(json.dumps(versions(), indent=2))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``info`` sub-command."""
    p = sub.add_parser("info", help="print the versions of the appliance and its dependencies")
    p.set_defaults(func=_run)
