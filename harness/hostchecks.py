"""Checks shared by the molecule scenarios' testinfra tests (imported by them, run on test hosts)."""

from __future__ import annotations

import re
from typing import Any

_ROOT = re.compile(r"""^root = (["'])(.*)\1$""", re.M)


def containerd_root(host: Any) -> str:
    """containerd's effective root from its merged config dump (either TOML quote style)."""
    match = _ROOT.search(host.check_output("containerd config dump"))
    assert match, "no top-level root in containerd config dump"
    return match.group(2)
