"""The appliance role agrees with itself and with the settings schema.

Its defaults, its argument_specs (nested options included) and its README table name the same
variables; the nested options are the schema's keys; the configuration template renders into a
file the schema accepts; and the role stops before installing anything when results would go
nowhere.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from appliance.settings import AeTitleConfig, DestinationConfig, SettingsError, SourceConfig, parse_config

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "appliance"
SPECS = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
DEFAULTS = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
#: Role variables that are lists of schema sections, and the section.
NESTED = {"appliance_ae_titles": AeTitleConfig, "appliance_sources": SourceConfig,
          "appliance_destinations": DestinationConfig}
#: Keys of the original SDK file that the role does not expose.
NOT_EXPOSED = {"processors"}
ONE_DESTINATION = [{"name": "PACS", "host_ip": "10.0.0.5", "port": 4242, "ae_title": "ORTHANC"}]


def _readme_variables() -> set[str]:
    table = (ROLE / "README.md").read_text().split("## Variables", 1)[1]
    rows = [line.split("|")[1] for line in table.splitlines() if line.startswith("| `")]
    return {name for cell in rows for name in re.findall(r"`(appliance_\w+)`", cell)}


def test_defaults_argument_specs_and_readme_name_the_same_variables() -> None:
    assert set(DEFAULTS) == set(SPECS) == _readme_variables()


@pytest.mark.parametrize("variable", sorted(NESTED))
def test_nested_options_are_the_schema_keys(variable: str) -> None:
    section = NESTED[variable]
    options = SPECS[variable]["options"]
    assert set(options) == {f.name for f in dataclasses.fields(section)} - NOT_EXPOSED
    for name, option in options.items():
        kind = option["type"]
        annotation = str(next(f.type for f in dataclasses.fields(section) if f.name == name))
        assert kind in ("int", "str", "raw"), name
        assert (kind == "int") == annotation.startswith("Annotated[Int"), name
        assert (kind == "raw") == ("tuple" in annotation), name  # a list, or the word none


def test_a_typo_in_a_nested_option_is_refused() -> None:
    result = ArgumentSpecValidator(SPECS).validate(
        {"appliance_ae_titles": [{"ae_title": "OrganSeg", "destination": ["PACS"]}]})
    assert "appliance_ae_titles.destination. Supported parameters include: ae_title, destinations, workflow." in (
        result.error_messages)


# Jinja with the few Ansible filters the defaults and the template use.
JINJA = jinja2.Environment(loader=jinja2.FileSystemLoader(ROLE / "templates"), undefined=jinja2.StrictUndefined)
JINJA.filters.update(to_json=json.dumps, bool=bool, dirname=os.path.dirname)


def _variables(**overrides: Any) -> dict[str, Any]:
    """The role's defaults with ``overrides``, their templates resolved."""
    facts = {"distribution_release": "noble", "architecture": "x86_64"}
    values: dict[str, Any] = {**DEFAULTS, "ansible_facts": facts, **overrides, "role_path": str(ROLE)}
    for _ in range(5):  # defaults refer to each other a few levels deep
        values = {k: JINJA.from_string(v).render(values) if isinstance(v, str) else v for k, v in values.items()}
    return values


def test_releases_with_too_new_a_python_get_another_releases_by_default() -> None:
    for codename, python in [("jammy", "/usr/bin/python3"), ("noble", "/usr/bin/python3"),
                             ("resolute", "/usr/bin/python3.12")]:
        facts = {"distribution_release": codename, "architecture": "x86_64"}
        assert _variables(ansible_facts=facts)["appliance_python"] == python
    assert "3.12" in DEFAULTS["appliance_supported_python"] and "3.13" not in DEFAULTS["appliance_supported_python"]


def _render(**overrides: Any) -> Any:
    text = JINJA.get_template("adapter.yaml.j2").render(ansible_managed="test", **_variables(**overrides))
    return yaml.safe_load(text)


def test_the_template_renders_a_valid_configuration() -> None:
    ae_titles = [{"ae_title": "OrganSeg", "workflow": "OrganSeg"},
                 {"ae_title": "LiverSeg", "workflow": "LiverSeg", "destinations": "none"}]
    config = parse_config(_render(appliance_destinations=ONE_DESTINATION, appliance_ae_titles=ae_titles,
                                  appliance_sources=[{"host_ip": "10.0.0.5", "ae_title": "ORTHANC"}]))
    assert [a.destinations for a in config.dicom.scp.ae_titles] == [("PACS",), ()]
    assert config.worker.triton.grpc_url == DEFAULTS["appliance_triton_grpc_url"]
    assert config.storage.database_url is None  # SQLite unless a PostgreSQL URL is given
    url = "postgresql://appliance:s3cret@db.example:5432/appliance"
    fleet = parse_config(_render(appliance_destinations=ONE_DESTINATION, appliance_database_url=url,
                                 appliance_reject_unknown_sources=False))
    assert fleet.storage.database_url == url
    with pytest.raises(SettingsError, match="AE title OrganSeg sends its results nowhere"):
        parse_config(_render())


def _preflight(tmp_path: Path, **variables: Any) -> subprocess.CompletedProcess[str]:
    playbook = tmp_path / "preflight.yml"
    playbook.write_text(yaml.safe_dump([{
        "hosts": "localhost", "connection": "local", "gather_facts": False, "vars": variables,
        "tasks": [{"ansible.builtin.include_role": {"name": "appliance", "tasks_from": "preflight.yml"}}]}]))
    return subprocess.run([str(Path(sys.executable).with_name("ansible-playbook")), "-i", "localhost,", str(playbook)],
                          capture_output=True, text=True, timeout=120, cwd=REPO)


def test_the_role_stops_when_results_would_go_nowhere(tmp_path: Path) -> None:
    sources = [{"host_ip": "10.0.0.5", "ae_title": "ORTHANC"}]
    refused = _preflight(tmp_path, appliance_sources=sources)  # the defaults: no destination
    assert refused.returncode != 0
    assert "AE title(s) OrganSeg, LiverSeg would send their results nowhere" in refused.stdout, refused.stdout
    accepted = _preflight(tmp_path, appliance_sources=sources, appliance_destinations=ONE_DESTINATION)
    assert accepted.returncode == 0, accepted.stdout
