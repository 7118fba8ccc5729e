"""site.yml runs the roles in the order of the issues, each skippable and taggable, and
playbooks/uninstall.yml removes them in the reverse order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]

# The whole host, in order (issues 1-5 and the ones to come): site.yml runs a subsequence of it.
CANONICAL = ["preflight", "nvidia_driver", "docker", "nvidia_container_runtime", "data_root", "disk_headroom",
             "kubernetes", "helm", "triton", "appliance"]
# Site roles without a step of their own in uninstall.yml, and why.
NO_ABSENT_STEP = {
    "data_root": "its drop-ins and moved stores go with docker's absent state (the data is kept)",
    "disk_headroom": "a check: it installs nothing",
}
# Roles whose absent state would touch what site.yml never installed: uninstall skips them with the same switch.
SWITCHED_IN_UNINSTALL = {"kubernetes", "helm"}


def _when(entry: dict[str, Any]) -> list[str]:
    when = entry.get("when", [])
    return [when] if isinstance(when, str) else list(when)


def _role_name(entry: dict[str, Any]) -> str:
    return str(entry["role"] if "role" in entry else entry["ansible.builtin.include_role"]["name"])


@pytest.fixture(scope="module")
def site_roles() -> list[dict[str, Any]]:
    plays = yaml.safe_load((REPO / "site.yml").read_text())
    return [role for play in plays for role in play.get("roles", [])]


@pytest.fixture(scope="module")
def uninstall_roles() -> list[dict[str, Any]]:
    plays = yaml.safe_load((REPO / "playbooks/uninstall.yml").read_text())
    return [task for play in plays for task in play.get("tasks", []) if "ansible.builtin.include_role" in task]


def test_site_runs_the_roles_in_canonical_order(site_roles: list[dict[str, Any]]) -> None:
    names = [_role_name(role) for role in site_roles]
    assert len(names) == len(set(names)), f"a role runs twice: {names}"
    assert set(names) <= set(CANONICAL), f"not in the canonical list: {set(names) - set(CANONICAL)}"
    assert names == [name for name in CANONICAL if name in names], f"site.yml order {names} differs from {CANONICAL}"
    assert names[:8] == CANONICAL[:8], "every role up to helm is in site.yml"


def test_every_site_role_has_its_tag_and_switch(site_roles: list[dict[str, Any]]) -> None:
    for role in site_roles:
        name = _role_name(role)
        assert role.get("tags") == [name], f"{name}: tags must be [{name}]"
        assert f"site_run_{name} | default(true) | bool" in _when(role), f"{name}: no site_run_{name} switch"


def test_uninstall_reverses_site(site_roles: list[dict[str, Any]], uninstall_roles: list[dict[str, Any]]) -> None:
    site = [_role_name(role) for role in site_roles]
    uninstall = [_role_name(task) for task in uninstall_roles]
    assert uninstall == [name for name in reversed(site) if name not in NO_ABSENT_STEP], (
        f"uninstall.yml order {uninstall} is not the reverse of site.yml's {site}")


def test_uninstall_calls_every_role_with_its_absent_state(uninstall_roles: list[dict[str, Any]]) -> None:
    for task in uninstall_roles:
        name = _role_name(task)
        assert task.get("vars", {}).get(f"{name}_state") == "absent", f"{name}: not called with {name}_state: absent"


def test_uninstall_skips_what_site_never_ran(uninstall_roles: list[dict[str, Any]]) -> None:
    for task in uninstall_roles:
        name = _role_name(task)
        if name in SWITCHED_IN_UNINSTALL:
            switch = f"site_run_{name} | default(true) | bool"
            assert switch in _when(task), f"{name}: uninstall ignores site_run_{name}"


def test_sandbox_switches_off_what_it_cannot_reach() -> None:
    sandbox = yaml.safe_load((REPO / "inventory/sandbox/group_vars/appliance.yml").read_text())
    assert sandbox["site_run_kubernetes"] is False
    assert sandbox["site_run_helm"] is False
