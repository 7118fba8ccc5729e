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


def other_release_packages(apt_list: str, codename: str) -> list[str]:
    """Installed packages whose installed version only another release's suites carry.

    *apt_list* is the output of ``apt list --installed`` (``name/suite1,suite2,now version arch [...]``),
    *codename* the host's own (``resolute``); a package whose version no list holds any more (``name/now``)
    counts as the host's own.
    """
    foreign = []
    for line in apt_list.splitlines():
        if "/" not in line or " " not in line:
            continue  # "Listing..." and warnings
        name, rest = line.split("/", 1)
        suites = [s for s in rest.split(" ", 1)[0].split(",") if s != "now"]
        if suites and all(s.split("-")[0] != codename for s in suites):
            foreign.append(name)
    return sorted(foreign)


def apt_lists_of_other_releases(list_files: list[str], codename: str) -> list[str]:
    """The files of /var/lib/apt/lists that belong to another release's suites (``..._dists_noble-updates_...``)."""
    suites = {f: f.split("_dists_", 1)[1].split("_")[0] for f in list_files if "_dists_" in f}
    return [f for f, suite in suites.items() if suite.split("-")[0] != codename]
