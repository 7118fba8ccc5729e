"""The recorded excerpts of the Ubuntu archive's Packages indexes (fixtures/ubuntu_archive/, see refresh.py).

A release's excerpts as the host would see them with every pocket and component enabled: the stanzas of
each suite, and ``apt-cache policy``-shaped entries (versions with the suites offering them).
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "ubuntu_archive"
RELEASES = {"22.04": "jammy", "24.04": "noble", "26.04": "resolute"}


class Archive:
    """One release's recorded indexes, read with the plugins' own parser (*debs*: debian_packages)."""

    def __init__(self, codename: str, debs: ModuleType) -> None:
        self.codename = codename
        self.suites: dict[str, list[dict[str, str]]] = {}
        for path in sorted(FIXTURES.glob(f"{codename}*_*.Packages")):
            suite, component = path.stem.split("_", 1)
            if component == "main-kernel-metas":
                self.kernel_metas = debs.parse_stanzas(path.read_text())
                continue
            for stanza in debs.parse_stanzas(path.read_text()):
                stanza["_suite"] = f"{suite}/{component}"
                self.suites.setdefault(suite, []).append(stanza)

    def stanzas(self, name: str) -> list[dict[str, str]]:
        """Every recorded stanza of *name*, from any pocket."""
        return [s for entries in self.suites.values() for s in entries if s["Package"] == name]

    def policy(self, name: str) -> dict | None:
        """An ``apt-cache policy`` entry for *name*: versions (newest first) with their suites, the candidate."""
        versions: dict[str, list[str]] = {}
        for stanza in self.stanzas(name):
            versions.setdefault(stanza["Version"], []).append(stanza["_suite"])
        if not versions:
            return None
        ordered = sorted(versions, key=_version_key, reverse=True)
        return {"installed": None, "candidate": ordered[0],
                "versions": [{"version": v, "suites": versions[v]} for v in ordered]}

    def candidate(self, name: str) -> dict[str, str] | None:
        """The newest recorded stanza of *name* (what apt would install)."""
        entry = self.policy(name)
        return next(s for s in self.stanzas(name) if s["Version"] == entry["candidate"]) if entry else None

    def installed_metas(self, debs: ModuleType, *names: str) -> dict[str, dict]:
        """dpkg-query-shaped entries for installed kernel image metapackages, from the main excerpt."""
        chosen = {s["Package"]: s for s in self.kernel_metas if s["Package"] in names}
        return {name: {"version": s["Version"], "installed": True, "held": False, "source": s.get("Source", name),
                       "depends": debs.relation_names(s.get("Depends", "")), "recommends": [], "provides": []}
                for name, s in chosen.items()}


def _version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """Good enough for the recorded versions of one package (same shape): numbers compare as numbers."""
    parts = version.replace("-", ".").replace("+", ".").replace("~", ".").split(".")
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in parts)
