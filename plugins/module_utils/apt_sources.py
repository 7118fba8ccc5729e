"""Which Ubuntu archive components a host's apt sources enable, per pocket (no Ansible imports).

Ubuntu ships the NVIDIA 580 packages of 22.04 and 24.04 only in the -updates and -security pockets:
a component enabled for the release pocket alone is not enough, so every pocket is checked.
"""

from __future__ import annotations

POCKETS = ("", "-updates", "-security")


def parse_indextargets(text: str) -> list[dict[str, str]]:
    """Rows of ``apt-get indextargets --format '$(SITE)\\t$(RELEASE)\\t$(COMPONENT)\\t$(SOURCESENTRY)'``."""
    rows = []
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) == 4:
            rows.append({"site": parts[0], "release": parts[1], "component": parts[2], "sourcesentry": parts[3]})
    return rows


def missing_components(targets: list[dict[str, str]], codename: str, wanted: list[str], own_file: str,
                       pockets: tuple[str, ...] = POCKETS) -> tuple[dict[str, list[str]], str | None]:
    """(``{suite: components of *wanted* not enabled there}`` for the suites lacking some, main's mirror).

    Suites are *codename* plus each pocket suffix (``noble``, ``noble-updates``, ``noble-security``).
    Rows from *own_file* (the role's own .sources file) are ignored, so a re-run decides the same.
    """
    enabled: dict[str, set[str]] = {f"{codename}{pocket}": set() for pocket in pockets}
    mirror = None
    for row in targets:
        if row.get("sourcesentry", "").split(":", 1)[0] == own_file or row.get("release") not in enabled:
            continue
        enabled[row["release"]].add(row.get("component", ""))
        if row.get("component") == "main" and row.get("release") == codename and mirror is None:
            mirror = row.get("site")
    missing = {suite: [c for c in wanted if c not in components] for suite, components in enabled.items()}
    return {suite: components for suite, components in missing.items() if components}, mirror


def source_stanzas(missing: dict[str, list[str]]) -> list[dict[str, list[str]]]:
    """deb822 stanzas adding exactly the *missing* components: suites that lack the same set share one.

    No suite/component pair the host already has is repeated (apt warns about duplicate targets).
    """
    stanzas: list[dict[str, list[str]]] = []
    for suite, components in missing.items():
        for stanza in stanzas:
            if stanza["components"] == components:
                stanza["suites"].append(suite)
                break
        else:
            stanzas.append({"suites": [suite], "components": list(components)})
    return stanzas
