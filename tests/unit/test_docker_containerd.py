"""The docker role owns containerd's base config: CRI enabled, the config version the installed
containerd reads, the drop-ins imported; a config.toml it did not render (Docker's containerd.io ships
one with disabled_plugins = ["cri"]) is recognised, backed up once and replaced."""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import tomllib
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles/docker"
# containerd.io's packaged /etc/containerd/config.toml (the docker scenario installs Ubuntu's containerd over it).
PACKAGED = (REPO / "molecule/docker/files/containerd.io-config.toml").read_text()


def _trust(value: Any) -> Any:
    return trust_as_template(value) if isinstance(value, str) else value


def templar(extra: dict[str, Any]) -> Templar:
    variables: dict[str, Any] = {"ansible_managed": "Ansible managed"}
    for name in ("defaults", "vars"):
        variables.update(yaml.safe_load((ROLE / name / "main.yml").read_text()))
    variables.update(extra)
    return Templar(loader=DataLoader(), variables={key: _trust(value) for key, value in variables.items()})


def render(config_version: int) -> str:
    text = (ROLE / "templates/containerd-config.toml.j2").read_text()
    result = templar({"docker_containerd": {"installed": True, "config_version": config_version}}).template(
        trust_as_template(text))
    assert isinstance(result, str)
    return result


def task(name: str) -> dict[str, Any]:
    tasks = yaml.safe_load((ROLE / "tasks/containerd.yml").read_text())
    return next(t for t in tasks if t["name"] == name)


def evaluate(expression: str, existing: str | None, backup_exists: bool = False) -> Any:
    """A task expression, given the stat and slurp results for a config.toml with *existing* text (None: none)."""
    facts = {
        "docker_containerd_config_stat": {"results": [{"stat": {"exists": existing is not None}},
                                                      {"stat": {"exists": backup_exists}}]},
        "docker_containerd_config_text": {"content": base64.b64encode((existing or "").encode()).decode()},
    }
    return templar(facts).template(trust_as_template(expression.strip()))


@pytest.mark.parametrize("config_version", [3, 2], ids=["containerd-2.x", "containerd-1.x"])
def test_base_config_enables_cri_and_imports_the_dropins(config_version: int) -> None:
    doc = tomllib.loads(render(config_version))
    assert doc == {"version": config_version, "imports": ["/etc/containerd/conf.d/*.toml"], "disabled_plugins": []}


def test_packaged_config_disables_cri() -> None:
    # The blocker the base config removes: containerd appends disabled_plugins from imports.
    assert tomllib.loads(PACKAGED)["disabled_plugins"] == ["cri"]


FOREIGN = task("Record whether it is another's (the package's, or an earlier hand-written one)")[
    "ansible.builtin.set_fact"]["docker_containerd_config_foreign"]


@pytest.mark.parametrize(("existing", "foreign"), [
    (None, False),                                  # no config yet: rendered, nothing to back up
    (PACKAGED, True),                               # containerd.io's: backed up and replaced
    ('version = 2\nimports = ["/etc/containerd/conf.d/*.toml"]\n', True),  # hand-written or an older role's
    (render(3), False),                             # the role's own (2.x): left to the template, idempotent
    (render(2), False),                             # the role's own (1.x)
], ids=["none", "containerd.io", "hand-written", "own-v3", "own-v2"])
def test_the_role_recognises_only_its_own_config(existing: str | None, foreign: bool) -> None:
    assert evaluate(FOREIGN, existing) is foreign


def test_backup_once_then_dated_backups() -> None:
    backup = task("Back up the config this role did not render (once)")["ansible.builtin.copy"]
    assert backup["force"] is False and backup["remote_src"] is True  # never overwrites the first backup
    template = task("Write the base containerd config (CRI enabled, the drop-ins imported)")["ansible.builtin.template"]
    # A second foreign config, with the first one's backup in place, is kept in a dated backup.
    foreign = FOREIGN.strip().removeprefix("{{").removesuffix("}}")
    expression = template["backup"].replace("docker_containerd_config_foreign", f"({foreign})")
    assert evaluate(expression, PACKAGED, backup_exists=True) is True
    assert evaluate(expression, PACKAGED, backup_exists=False) is False
    assert evaluate(expression, render(3), backup_exists=True) is False


def test_report_says_whether_the_replaced_config_disabled_cri() -> None:
    regex = task("Say where the replaced config went")["vars"]["docker_containerd_config_cri_disabled"]
    assert evaluate(regex, PACKAGED) is True
    assert evaluate(regex, render(3)) is False


def _containerd_major() -> int | None:
    binary = shutil.which("containerd")
    if binary is None:
        return None
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False).stdout
    return int(out.split()[2].lstrip("v").split(".")[0])


@pytest.mark.skipif(_containerd_major() is None, reason="containerd is not installed on this machine")
def test_real_containerd_reads_the_base_config_and_keeps_a_packaged_cri_disabled(tmp_path: Path) -> None:
    major = _containerd_major()
    assert major is not None
    dropins = tmp_path / "conf.d"
    dropins.mkdir()
    # A drop-in that tries to re-enable every plugin, in the schema this containerd reads.
    (dropins / "50-enable.toml").write_text("disabled_plugins = []\n")

    def dump(base: str) -> dict[str, Any]:
        config = tmp_path / "config.toml"
        config.write_text(base.replace("/etc/containerd/conf.d", str(dropins)))
        out = subprocess.run(["containerd", "--config", str(config), "config", "dump"],
                             capture_output=True, text=True, check=True).stdout
        return tomllib.loads(out)

    ours = dump(render(3 if major >= 2 else 2))
    assert ours["disabled_plugins"] == []
    assert ours["version"] == (3 if major >= 2 else 2)
    assert str(dropins / "50-enable.toml") in ours["imports"]
    packaged = dump(PACKAGED + f'\nimports = ["{dropins}/*.toml"]\n')
    assert packaged["disabled_plugins"] == ["cri"]  # the drop-in could not undo it
