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

from appliance.jobs import RetentionPolicy
from appliance.settings import (
    AeTitleConfig,
    DashboardUser,
    DestinationConfig,
    ScuTlsConfig,
    SettingsError,
    SourceConfig,
    parse_config,
)

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "roles" / "appliance"
SPECS = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]["options"]
DEFAULTS = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
# The role's internal variables the template reads (the Python apt source ones evaluate to dicts,
# which this plain-text rendering cannot produce; the template does not use them).
ROLE_VARS = {k: v for k, v in yaml.safe_load((ROLE / "vars" / "main.yml").read_text()).items()
             if not k.startswith("__appliance_python")}
#: Role variables that are lists of schema sections, and the section.
NESTED = {"appliance_ae_titles": AeTitleConfig, "appliance_sources": SourceConfig,
          "appliance_destinations": DestinationConfig, "appliance_dashboard_users": DashboardUser}
#: Keys of the original SDK file that the role does not expose.
NOT_EXPOSED = {"processors"}
#: Nested options that are sections themselves (type dict), and the section.
SUBSECTIONS = {"tls": ScuTlsConfig}
ONE_DESTINATION = [{"name": "PACS", "host_ip": "10.0.0.5", "port": 4242, "ae_title": "ORTHANC"}]


def _readme_variables() -> set[str]:
    table = (ROLE / "README.md").read_text().split("## Variables", 1)[1]
    rows = [line.split("|")[1] for line in table.splitlines() if line.startswith("| `")]
    return {name for cell in rows for name in re.findall(r"`(appliance_\w+)`", cell)}


def test_defaults_argument_specs_and_readme_name_the_same_variables() -> None:
    assert set(DEFAULTS) == set(SPECS) == _readme_variables()


def _check_options(section: type, options: dict[str, Any]) -> None:
    assert set(options) == {f.name for f in dataclasses.fields(section)} - NOT_EXPOSED
    for name, option in options.items():
        kind = option["type"]
        annotation = str(next(f.type for f in dataclasses.fields(section) if f.name == name))
        if name in SUBSECTIONS:
            assert kind == "dict", name
            _check_options(SUBSECTIONS[name], option["options"])
            continue
        assert kind in ("int", "str", "raw", "bool"), name
        assert (kind == "int") == annotation.startswith("Annotated[Int"), name
        assert (kind == "bool") == annotation.startswith("Annotated[Flag"), name
        assert (kind == "raw") == ("tuple" in annotation), name  # a list, or the word none


@pytest.mark.parametrize("variable", sorted(NESTED))
def test_nested_options_are_the_schema_keys(variable: str) -> None:
    _check_options(NESTED[variable], SPECS[variable]["options"])


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
    values: dict[str, Any] = {**DEFAULTS, **ROLE_VARS, "ansible_facts": facts, **overrides, "role_path": str(ROLE)}
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
    assert config.retention.policy == RetentionPolicy()  # keeps every job unless told otherwise
    kept = parse_config(_render(appliance_destinations=ONE_DESTINATION, appliance_retention_max_age_days=30,
                                appliance_retention_disk_watermark_percent=85, appliance_reject_unknown_sources=False))
    assert kept.retention.policy == RetentionPolicy(max_age_days=30, disk_watermark_percent=85)
    with pytest.raises(SettingsError, match="AE title OrganSeg sends its results nowhere"):
        parse_config(_render())


def test_the_template_renders_tls_settings() -> None:
    destinations = [{**ONE_DESTINATION[0], "tls": {"ca_certificates": "files/ca.pem", "certificate": "files/me.pem",
                                                   "private_key": "files/me.key"}},
                    {"name": "OTHER", "host_ip": "pacs.example", "port": 2762, "ae_title": "OTHER",
                     "tls": {"check_hostname": False}}]
    rendered = _render(appliance_destinations=destinations, appliance_tls_certificate="files/scp.pem",
                       appliance_tls_private_key="files/scp.key", appliance_tls_ca_certificates="files/ca.pem",
                       appliance_tls_require_client_certificate=True, appliance_reject_unknown_sources=False,
                       appliance_ae_titles=[{"ae_title": "OrganSeg", "destinations": ["PACS", "OTHER"]}])
    config = parse_config(rendered)
    tls_dir = Path(DEFAULTS["appliance_config_dir"]) / "tls"
    assert config.dicom.scp.tls is not None and config.dicom.scp.tls.require_client_certificate
    assert config.dicom.scp.tls.private_key == tls_dir / "scp-private-key.pem"
    pacs, other = (d.tls for d in config.dicom.scu.destinations)
    assert pacs is not None and pacs.private_key == tls_dir / "dest-PACS-private-key.pem" and pacs.check_hostname
    assert other is not None and other.ca_certificates is None and not other.check_hostname
    plain = _render(appliance_destinations=ONE_DESTINATION, appliance_reject_unknown_sources=False)
    assert parse_config(plain).dicom.scp.tls is None and parse_config(plain).dicom.scu.destinations[0].tls is None


def test_the_template_renders_the_dashboard_block() -> None:
    from appliance.dashboard.auth import hash_password

    users = [{"name": "olga", "role": "operator", "password_hash": hash_password("olga-secret")}]
    base = {"appliance_destinations": ONE_DESTINATION,
            "appliance_sources": [{"host_ip": "10.0.0.5", "ae_title": "ORTHANC"}]}
    config = parse_config(_render(**base, appliance_dashboard_users=users))
    assert [(u.name, u.role) for u in config.dashboard.users] == [("olga", "operator")]
    assert (config.dashboard.port, config.dashboard.bind_address) == (8443, "0.0.0.0")
    assert str(config.dashboard.tls_certificate) == "/etc/appliance/tls/dashboard.crt"  # the role's self-signed one
    assert parse_config(_render(**base)).dashboard.users == ()


def _play(tmp_path: Path, name: str, play: dict[str, Any], inventory: str = "localhost,"
          ) -> subprocess.CompletedProcess[str]:
    """ansible-playbook on one play, written to tmp_path/name, from the repository root (its ansible.cfg)."""
    playbook = tmp_path / name
    playbook.write_text(yaml.safe_dump([play]))
    return subprocess.run([str(Path(sys.executable).with_name("ansible-playbook")), "-i", inventory, str(playbook)],
                          capture_output=True, text=True, timeout=180, cwd=REPO)


def _preflight(tmp_path: Path, **variables: Any) -> subprocess.CompletedProcess[str]:
    return _play(tmp_path, "preflight.yml", {
        "hosts": "localhost", "connection": "local", "gather_facts": False, "vars": variables,
        "tasks": [{"ansible.builtin.include_role": {"name": "appliance", "tasks_from": "preflight.yml"}}]})


def test_the_role_stops_when_results_would_go_nowhere(tmp_path: Path) -> None:
    sources = [{"host_ip": "10.0.0.5", "ae_title": "ORTHANC"}]
    refused = _preflight(tmp_path, appliance_sources=sources)  # the defaults: no destination
    assert refused.returncode != 0
    assert "AE title(s) OrganSeg, LiverSeg would send their results nowhere" in refused.stdout, refused.stdout
    accepted = _preflight(tmp_path, appliance_sources=sources, appliance_destinations=ONE_DESTINATION)
    assert accepted.returncode == 0, accepted.stdout


def test_the_role_stops_on_half_a_tls_pair(tmp_path: Path) -> None:
    refused = _preflight(tmp_path, appliance_sources=[{"host_ip": "10.0.0.5", "ae_title": "ORTHANC"}],
                         appliance_destinations=ONE_DESTINATION, appliance_tls_private_key="files/scp.key")
    assert refused.returncode != 0
    assert "TLS on the DICOM port needs both appliance_tls_certificate and appliance_tls_private_key" in (
        refused.stdout), refused.stdout


def _run_ufw_script(state: str, rule_sets: list[dict[str, Any]], present: str) -> subprocess.CompletedProcess[str]:
    """Run firewall.yml's plan script as the role does: the rule sets as JSON, `ufw show added` on stdin."""
    tasks = yaml.safe_load((ROLE / "tasks" / "firewall.yml").read_text())
    script = next(t["vars"]["__appliance_ufw_script"] for t in tasks if "vars" in t)
    return subprocess.run([sys.executable, "-c", script, state, json.dumps(rule_sets)], input=present,
                          capture_output=True, text=True, check=False)


def _ufw_plan(state: str, rule_sets: list[dict[str, Any]], present: str) -> dict[str, list[dict[str, str]]]:
    done = _run_ufw_script(state, rule_sets, present)
    assert done.returncode == 0, done.stderr
    plan: dict[str, list[dict[str, str]]] = json.loads(done.stdout)
    return plan


FIREWALL_SETS = [
    {"variable": "appliance_firewall_allow_from", "comment": "appliance DICOM SCP", "port": "104",
     "from": ["10.11.2.0/16"]},
    {"variable": "appliance_dashboard_allow_from", "comment": "appliance dashboard", "port": "8443",
     "from": ["192.168.1.7/32"]},
]
UFW_ADDED = """Added user rules (see 'ufw status' for running firewall):
ufw allow from 10.99.0.0/16 to any port 22 proto tcp comment 'operator ssh'
ufw allow from 10.11.0.0/16 to any port 104 proto tcp comment 'appliance DICOM SCP'
ufw allow from 10.12.0.0/16 to any port 104 proto tcp comment 'appliance DICOM SCP'
ufw allow 8443/tcp comment 'appliance dashboard'
"""


def test_the_firewall_plan_reconciles_the_dicom_and_dashboard_rules() -> None:
    plan = _ufw_plan("present", FIREWALL_SETS, UFW_ADDED)
    # Wanted networks as ufw stores them; the operator's rule is never in the plan.
    assert plan["add"] == [
        {"from": "10.11.0.0/16", "port": "104", "comment": "appliance DICOM SCP"},
        {"from": "192.168.1.7", "port": "8443", "comment": "appliance dashboard"}]
    assert plan["delete"] == [
        {"from": "10.12.0.0/16", "port": "104", "comment": "appliance DICOM SCP"},
        {"from": "any", "port": "8443", "comment": "appliance dashboard"}]


def test_the_firewall_plan_deletes_every_rule_of_the_role_when_absent() -> None:
    plan = _ufw_plan("absent", FIREWALL_SETS, UFW_ADDED)
    assert plan["add"] == []
    assert {r["comment"] for r in plan["delete"]} == {"appliance DICOM SCP", "appliance dashboard"}
    assert len(plan["delete"]) == 3


def test_the_firewall_plan_refuses_what_is_no_network() -> None:
    sets = [{**FIREWALL_SETS[1], "from": ["dashboard.example"]}]
    done = _run_ufw_script("present", sets, "")
    assert done.returncode != 0
    assert "appliance_dashboard_allow_from: 'dashboard.example' is neither" in done.stderr


def test_kubernetes_mode_builds_the_chart_values_from_the_inventory(tmp_path: Path) -> None:
    """tasks/chart_values.yml in a real play: every appliance_* variable, the role's defaults included, goes
    through the filter (tests/chart/test_site_values.py renders the chart with what it makes)."""
    out = tmp_path / "values.json"
    inventory = tmp_path / "hosts.ini"
    inventory.write_text("localhost ansible_connection=local triton_mode=cpu\n")
    done = _play(tmp_path, "chart-values.yml", {
        "hosts": "all", "gather_facts": True,
        "vars": {"appliance_mode": "kubernetes", "appliance_sources": [{"host_ip": "10.0.0.5", "ae_title": "CT1"}],
                 "appliance_destinations": ONE_DESTINATION, "appliance_worker_workers": 5,
                 "appliance_chart_values": {"worker": {"replicas": 3}}},
        "tasks": [{"ansible.builtin.include_role": {"name": "appliance", "tasks_from": "chart_values.yml"}},
                  {"ansible.builtin.copy": {"content": "{{ __appliance_chart_values | to_json }}", "dest": str(out),
                                            "mode": "0600"}}]}, str(inventory))
    assert done.returncode == 0, done.stdout
    values = json.loads(out.read_text())
    assert values["config"]["dicom"]["scu"]["destinations"][0]["ae-title"] == "ORTHANC"
    assert values["config"]["dicom"]["scp"]["sources"] == [{"host-ip": "10.0.0.5", "ae-title": "CT1"}]
    assert values["config"]["worker"]["workers"] == 5
    assert values["worker"] == {"replicas": 3}
    assert values["database"]["external"]["url"] == ""
    assert values["triton"]["mode"] == "cpu"


def _kubernetes_mode(tmp_path: Path, group: str) -> subprocess.CompletedProcess[str]:
    """The role's main.yml in kubernetes mode on localhost as a member of ``group``, on a machine without a
    cluster: it must install nothing (no unit, no virtualenv, no firewall rule) and reach no API server."""
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(f"[{group}]\nlocalhost ansible_connection=local\n")
    return _play(tmp_path, "kubernetes-mode.yml", {
        "hosts": "all", "gather_facts": True,
        "vars": {"appliance_mode": "kubernetes", "appliance_sources": [{"host_ip": "10.0.0.5", "ae_title": "CT1"}],
                 "appliance_destinations": ONE_DESTINATION,
                 "appliance_chart_kubeconfig": str(tmp_path / "no-cluster.conf")},
        "tasks": [{"ansible.builtin.include_role": {"name": "appliance"}}]}, str(inventory))


def test_kubernetes_mode_installs_no_unit_and_needs_the_cluster(tmp_path: Path) -> None:
    worker = _kubernetes_mode(tmp_path, "kubernetes_workers")
    assert worker.returncode == 0, worker.stdout
    assert "changed=0" in worker.stdout, worker.stdout
    for skipped in ("runtime.yml", "configure.yml", "firewall.yml", "service.yml", "chart.yml"):
        assert f"included: {ROLE}/tasks/{skipped}" not in worker.stdout, skipped
    control_plane = _kubernetes_mode(tmp_path, "kubernetes_control_plane")
    assert control_plane.returncode != 0
    assert "no-cluster.conf" in control_plane.stdout and "run the kubernetes and helm roles first" in (
        control_plane.stdout), control_plane.stdout
    assert "included: " + str(ROLE / "tasks/runtime.yml") not in control_plane.stdout


def test_the_chart_copy_is_exact(tmp_path: Path) -> None:
    """tasks/chart_copy.yml: the controller's chart arrives whole, and a file it no longer has goes."""
    dest = tmp_path / "chart"
    (dest / "templates").mkdir(parents=True)
    (dest / "templates" / "removed-since.yaml").write_text("kind: Stale\n")
    done = _play(tmp_path, "chart-copy.yml", {
        "hosts": "localhost", "connection": "local", "gather_facts": False,
        "vars": {"appliance_chart_dir": str(dest)},
        "tasks": [{"ansible.builtin.include_role": {"name": "appliance", "tasks_from": "chart_copy.yml"}}]})
    assert done.returncode == 0, done.stdout
    source = REPO / "charts" / "appliance"
    assert sorted(p.relative_to(dest) for p in dest.rglob("*") if p.is_file()) == sorted(
        p.relative_to(source) for p in source.rglob("*") if p.is_file())
