"""Debian package metadata as apt and dpkg print it, parsed (no Ansible imports).

The same functions read what a host reports (``dpkg-query``, ``apt-cache policy``, ``apt-get
--simulate``) and what the archive publishes (``Packages`` indexes, ``apt-cache show``), so unit tests
feed them excerpts of the real archive's indexes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# One line per package known to dpkg: name, version, status abbreviation, full status, source
# package, then the relationship fields that decide what a package pulled in.
DPKG_QUERY_FORMAT = (
    "${Package}\\t${Version}\\t${db:Status-Abbrev}\\t${Status}\\t${source:Package}\\t${Depends}\\t${Pre-Depends}"
    "\\t${Recommends}\\t${Provides}\\n"
)
_NAME = re.compile(r"^\s*([a-z0-9][a-z0-9+.-]*)")


def relation_names(field: str) -> list[list[str]]:
    """``Depends``-style field as groups of alternative package names (versions and :arch dropped).

    ``"a (>= 1), b | c:any"`` -> ``[["a"], ["b", "c"]]``.
    """
    groups = []
    for group in field.split(","):
        names = [m.group(1) for alt in group.split("|") if (m := _NAME.match(alt))]
        if names:
            groups.append(names)
    return groups


def version_bound(field: str, name: str, operator: str) -> str | None:
    """The version *name* is bounded by with *operator* in a relationship field, or None.

    ``version_bound("x (>= 580.95.05), y", "x", ">=")`` -> ``"580.95.05"``.
    """
    match = re.search(rf"(?:^|[,|]\s*){re.escape(name)}(?::\S+)?\s*\(\s*{re.escape(operator)}\s*([^)\s]+)\s*\)",
                      field)
    return match.group(1) if match else None


def parse_dpkg_query(text: str) -> dict[str, dict]:
    """Packages dpkg knows, from ``dpkg-query -W -f DPKG_QUERY_FORMAT``.

    Each: ``version``, ``installed`` (unpacked or configured, whatever the selection), ``held`` (the
    selection is hold, even for a package no longer installed), ``source``, ``depends`` (Depends and
    Pre-Depends as alternative groups), ``recommends`` and ``provides`` (names).
    """
    packages: dict[str, dict] = {}
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) != 9:
            continue
        name, version, abbrev, status, source, depends, pre_depends, recommends, provides = parts
        packages[name] = {
            "version": version,
            "installed": abbrev[1:2] in ("i", "U", "F", "W", "t"),
            "held": status.startswith("hold "),
            "source": source or name,
            "depends": relation_names(pre_depends) + relation_names(depends),
            "recommends": relation_names(recommends),
            "provides": [group[0] for group in relation_names(provides)],
        }
    return packages


def installed(packages: dict[str, dict]) -> dict[str, dict]:
    """Only the installed ones."""
    return {name: data for name, data in packages.items() if data["installed"]}


def dependency_closure(roots: Iterable[str], packages: dict[str, dict], recommends: bool = False) -> set[str]:
    """Installed packages reachable from *roots* through Depends/Pre-Depends (and Recommends).

    A virtual name resolves to the installed packages that provide it; of alternatives, every
    installed one counts (any may be what satisfied the group).
    """
    present = installed(packages)
    providers: dict[str, set[str]] = {}
    for name, data in present.items():
        for virtual in data["provides"]:
            providers.setdefault(virtual, set()).add(name)
    seen: set[str] = set()
    stack = [name for name in roots if name in present]
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        data = present[name]
        groups = data["depends"] + (data["recommends"] if recommends else [])
        for group in groups:
            for alternative in group:
                for target in ({alternative} if alternative in present else set()) | providers.get(alternative, set()):
                    if target not in seen:
                        stack.append(target)
    return seen


def parse_stanzas(text: str) -> list[dict[str, str]]:
    """Deb822 stanzas (a ``Packages`` index, ``apt-cache show``): one dict per paragraph."""
    stanzas = []
    for paragraph in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for line in paragraph.splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key] += "\n" + line.strip()
            elif ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if fields.get("Package"):
            stanzas.append(fields)
    return stanzas


def parse_policy(text: str) -> dict[str, dict]:
    """``apt-cache policy NAME...`` as ``{name: {installed, candidate, versions: [{version, suites}]}}``.

    ``suites`` are ``codename-pocket/component`` strings (``noble-updates/restricted``); a version only
    in dpkg's status file has none. ``installed`` and ``candidate`` are None for ``(none)``.
    """
    result: dict[str, dict] = {}
    current: dict | None = None
    entry: dict | None = None
    for line in text.splitlines():
        if line and not line[0].isspace() and line.endswith(":"):
            current = {"installed": None, "candidate": None, "versions": []}
            result[line[:-1]] = current
            entry = None
            continue
        if current is None:
            continue
        stripped = line.strip()
        key, _, value = stripped.partition(":")
        if key in ("Installed", "Candidate"):
            current[key.lower()] = None if value.strip() in ("", "(none)") else value.strip()
            continue
        # Version lines are indented five spaces, or start " *** " for the installed one.
        version = re.fullmatch(r"(?: {5}| \*\*\* )(\S+) (-?\d+)", line)
        if version:
            entry = {"version": version.group(1), "suites": []}
            current["versions"].append(entry)
            continue
        origin = re.fullmatch(r"-?\d+ \S+ (\S+)(?: \S+)? Packages", stripped)
        if origin and entry is not None:
            entry["suites"].append(origin.group(1))
    return result


def parse_simulation(text: str) -> list[dict[str, str]]:
    """``apt-get --simulate install`` output: what it would install or upgrade.

    ``Inst name [old] (new suites [arch])`` -> ``{"name", "version", "replaces"}`` (``replaces`` is the
    installed version it upgrades, or "").
    """
    planned = []
    for match in re.finditer(r"^Inst (\S+) (?:\[(\S+)\] )?\((\S+)", text, re.MULTILINE):
        planned.append({"name": match.group(1), "replaces": match.group(2) or "", "version": match.group(3)})
    return planned
