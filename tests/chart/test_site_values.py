"""site.yml's kubernetes mode: the chart's values built from the appliance role's inventory variables.

The mapping (``roles/appliance/filter_plugins/chart_values.py``) is run on the role's defaults and on a
full site (sources, destinations, retention, an external database, dashboard users), the chart is
rendered with the result, and the ConfigMap must say what the systemd host's adapter.yaml says and
pass ``appliance adapter --check``. Not tested here: ``kubernetes.core.helm`` installing it on a live
API server (no cluster on this machine).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from appliance.dashboard.auth import hash_password

from .chartkit import RELEASE, REPO, check_config, render

pytest.importorskip("helm_python", reason="helm-python-sdk is not installed (pip install -e '.[dev]')")

_spec = importlib.util.spec_from_file_location(
    "appliance_chart_values_filter", REPO / "roles/appliance/filter_plugins/chart_values.py")
assert _spec is not None and _spec.loader is not None
chart_values = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = chart_values
_spec.loader.exec_module(chart_values)

DEFAULTS: dict[str, Any] = yaml.safe_load((REPO / "roles/appliance/defaults/main.yml").read_text())
# The least a site gives beyond the defaults, as the role's preflight wants: who may send, where results go.
MINIMAL = {"appliance_sources": [{"host_ip": "10.0.0.5", "ae_title": "CT1"}],
           "appliance_destinations": [{"name": "pacs", "host_ip": "10.0.0.9", "port": 11112, "ae_title": "PACS"}]}

HASH = hash_password("correct horse battery")
SITE = {
    "appliance_ae_titles": [{"ae_title": "OrganSeg", "workflow": "OrganSeg", "destinations": ["pacs"]},
                            {"ae_title": "LiverSeg"}],
    **MINIMAL,
    "appliance_retention_max_age_days": 14,
    "appliance_retention_disk_watermark_percent": 85,
    "appliance_database_url": "postgresql://appliance@db.example:5432/appliance",
    "appliance_chart_database_secret": "appliance-db",
    "appliance_dashboard_users": [{"name": "alice", "role": "admin", "password_hash": HASH}],
    "appliance_worker_workers": 3,
    "appliance_chart_values": {"adapter": {"service": {"type": "LoadBalancer"}}, "worker": {"replicas": 4},
                               "config": {"dicom": {"scp": {"max-associations": 8}}}},
}


def _values(**overrides: Any) -> dict[str, Any]:
    return dict(chart_values.appliance_chart_values({**DEFAULTS, **MINIMAL, **overrides}, "cpu"))


@pytest.mark.parametrize("overrides", [{}, SITE], ids=["minimal-site", "full-site"])
@pytest.mark.parametrize("service", ["adapter", "worker", "exporter"])
def test_the_inventory_renders_a_config_the_appliance_accepts(overrides: dict[str, Any], service: str,
                                                              tmp_path: Path) -> None:
    rendered = render(_values(**overrides))
    status, output = check_config(rendered.config_file(), tmp_path, service)
    assert f"{tmp_path / 'adapter.yaml'}: OK" in output, output
    # The database (bundled Service or the site's server) cannot be reached from here: only that may fail.
    assert status == 0 or f"appliance {service}: job store postgresql://" in output, output


def test_the_config_map_says_what_the_inventory_says() -> None:
    rendered = render(_values(**SITE))
    config = yaml.safe_load(rendered.config_file())
    scp, scu = config["dicom"]["scp"], config["dicom"]["scu"]
    assert [(a["ae-title"], a["workflow"], a.get("destinations")) for a in scp["ae-titles"]] == [
        ("OrganSeg", "OrganSeg", ["pacs"]), ("LiverSeg", "LiverSeg", None)]
    assert scp["sources"] == [{"host-ip": "10.0.0.5", "ae-title": "CT1"}]
    assert scp["max-associations"] == 8  # appliance_chart_values merged key by key: the siblings stay
    assert scp["reject-unknown-sources"] is True
    assert scu["destinations"] == [{"name": "pacs", "host-ip": "10.0.0.9", "port": 11112, "ae-title": "PACS"}]
    assert config["retention"] == {"max-age-days": 14.0, "disk-watermark-percent": 85.0, "interval-seconds": 600.0}
    assert config["worker"]["workers"] == 3
    assert config["storage"]["database-url"] == SITE["appliance_database_url"]
    assert config["dashboard"]["users"] == [{"name": "alice", "role": "admin", "password-hash": HASH}]
    # The cluster's own values (appliance_chart_values) land on top.
    assert rendered.get("Service", f"{RELEASE}-adapter")["spec"]["type"] == "LoadBalancer"
    assert rendered.get("Deployment", f"{RELEASE}-worker")["spec"]["replicas"] == 4
    # The password comes from the site's Secret, never from the ConfigMap.
    env = rendered.pod("worker").spec["containers"][0]["env"]
    assert {"name": "PGPASSWORD", "valueFrom": {"secretKeyRef": {"name": "appliance-db", "key": "password"}}} in env


def test_sqlite_on_one_host_becomes_the_bundled_postgresql() -> None:
    rendered = render(_values())
    assert rendered.of_kind("StatefulSet"), "no bundled PostgreSQL"
    assert yaml.safe_load(rendered.config_file())["storage"]["database-url"].startswith("postgresql://")


def test_uninstall_keeps_the_spool_and_the_database() -> None:
    """helm uninstall leaves objects annotated helm.sh/resource-policy: keep, and never deletes a
    StatefulSet's claims: the spool, the bundled database's data and its password stay until purge."""
    rendered = render(_values())
    kept = {(d["kind"], d["metadata"]["name"]) for d in rendered.docs
            if d["metadata"].get("annotations", {}).get("helm.sh/resource-policy") == "keep"}
    assert {("PersistentVolumeClaim", f"{RELEASE}-spool"), ("Secret", f"{RELEASE}-postgresql")} <= kept
    claims = rendered.get("StatefulSet", f"{RELEASE}-postgresql")["spec"]["volumeClaimTemplates"]
    # appliance_purge_data deletes them by the release's instance label: every one carries it.
    kept_objects = [d for d in rendered.docs if (d["kind"], d["metadata"]["name"]) in kept] + claims
    assert {d["metadata"]["labels"]["app.kubernetes.io/instance"] for d in kept_objects} == {RELEASE}


@pytest.mark.parametrize(("overrides", "message"), [
    ({"appliance_tls_certificate": "files/scp.pem"}, "appliance_tls_certificate is a file on the host"),
    ({"appliance_dashboard_tls_certificate": "files/d.pem"}, "dashboard.tls.existingSecret"),
    ({"appliance_site_models": [{"name": "x"}]}, "appliance_site_models are not in the chart"),
    ({"appliance_destinations": [{"name": "pacs", "host_ip": "h", "port": 1, "ae_title": "P", "tls": {}}]},
     "destination 'pacs' uses TLS"),
    ({"appliance_database_url": "postgresql://u:secret@db/appliance"}, "carries a password"),
])
def test_what_cannot_reach_a_pod_is_refused_with_advice(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(Exception, match=message):
        _values(**overrides)
