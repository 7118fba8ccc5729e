"""Read what ``apt-get install --simulate`` would do, shared by the apt_plan module and its tests."""

from __future__ import annotations

import re

# "Inst NAME [OLD] (NEW ...)" or "Inst NAME (NEW ...)"; "Remv NAME [OLD]". NAME carries ":ARCH" only
# for a foreign architecture.
_ACTION = re.compile(r"^(Inst|Remv) (\S+)(?: \[([^\]]*)\])?")


def parse_simulation(text: str) -> dict[str, list[str]]:
    """The packages a simulated install would newly install, upgrade and remove, each sorted.

    ``Conf`` lines repeat the ``Inst`` ones and are ignored; an ``Inst`` line with the installed
    version in brackets is an upgrade of a package that is already there.
    """
    new: set[str] = set()
    upgraded: set[str] = set()
    removed: set[str] = set()
    for line in text.splitlines():
        match = _ACTION.match(line)
        if match is None:
            continue
        action, name, old = match.groups()
        if action == "Remv":
            removed.add(name)
        elif old is None:
            new.add(name)
        else:
            upgraded.add(name)
    return {"new": sorted(new), "upgraded": sorted(upgraded), "removed": sorted(removed)}
