"""The appliance chart's values, built from the appliance role's inventory variables.

The one mapping from the inventory (``appliance_*``, as ``defaults/main.yml`` documents them) to
``charts/appliance/values.yaml``, so that ``appliance_mode: kubernetes`` runs the same site as the
systemd units would. Used by ``tasks/chart.yml`` as ``{{ settings | appliance_chart_values }}``, and
imported by ``tests/chart/test_site_values.py``, which renders the chart with what it returns.

Settings the chart cannot take from a host file (TLS certificates and keys, site models, a workflows
folder) are refused with a message that says what to do instead, never silently dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from ansible.errors import AnsibleFilterError as _Error  # the play stops with the message
from ansible.utils.vars import merge_hash

# Host files that cannot reach a pod: each needs a Secret in the cluster, named in appliance_chart_values.
_HOST_FILES = {
    "appliance_tls_certificate": "the chart has no DICOM TLS yet: leave it empty in kubernetes mode",
    "appliance_dashboard_tls_certificate": (
        "create a kubernetes.io/tls Secret and name it in appliance_chart_values.dashboard.tls.existingSecret"),
    "appliance_workflows_dir": "the chart's image carries the workflows: leave it empty in kubernetes mode",
}


def _refuse_host_files(settings: Mapping[str, Any]) -> None:
    for name, advice in _HOST_FILES.items():
        if str(settings.get(name) or ""):
            raise _Error(f"appliance_mode kubernetes: {name} is a file on the host; {advice}")
    if settings.get("appliance_site_models"):
        raise _Error("appliance_mode kubernetes: appliance_site_models are not in the chart yet; "
                     "leave them empty in kubernetes mode")
    for dest in settings.get("appliance_destinations", []):
        if "tls" in dest:
            raise _Error(f"appliance_mode kubernetes: destination {dest.get('name')!r} uses TLS, which "
                         "the chart has no certificates for yet; remove its tls block in kubernetes mode")


def _dicom(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The original dicom-server-config.yaml block, as ``templates/adapter.yaml.j2`` writes it."""
    ae_titles = []
    for ae in settings["appliance_ae_titles"]:
        entry = {"ae-title": ae["ae_title"], "workflow": ae.get("workflow") or ae["ae_title"]}
        if "destinations" in ae:
            entry["destinations"] = ae["destinations"]
        ae_titles.append(entry)
    return {
        "scp": {
            "port": int(settings["appliance_dicom_port"]),
            "ae-titles": ae_titles,
            "max-associations": int(settings["appliance_max_associations"]),
            "verification": {"enabled": True},
            "reject-unknown-sources": bool(settings["appliance_reject_unknown_sources"]),
            "sources": [{"host-ip": s["host_ip"], "ae-title": s["ae_title"]}
                        for s in settings["appliance_sources"]],
        },
        "scu": {
            "ae-title": settings["appliance_scu_ae_title"],
            "destinations": [{"name": d["name"], "host-ip": d["host_ip"], "port": int(d["port"]),
                              "ae-title": d["ae_title"]} for d in settings["appliance_destinations"]],
        },
    }


def _retention(settings: Mapping[str, Any]) -> dict[str, float]:
    """The retention block: the days and watermark that are set (None: keep), and the interval."""
    keys = {"appliance_retention_max_age_days": "max-age-days",
            "appliance_retention_failed_max_age_days": "failed-max-age-days",
            "appliance_retention_disk_watermark_percent": "disk-watermark-percent"}
    retention = {key: float(settings[name]) for name, key in keys.items() if settings.get(name) is not None}
    retention["interval-seconds"] = float(settings["appliance_retention_interval_seconds"])
    return retention


def _database(settings: Mapping[str, Any]) -> dict[str, Any]:
    """appliance_database_url "" (SQLite on one host) becomes the chart's bundled PostgreSQL; a URL the
    site's own, its password from the Secret appliance_chart_database_secret (never in the ConfigMap)."""
    url = str(settings.get("appliance_database_url") or "")
    if not url:
        return {"type": "postgresql", "external": {"url": ""}}
    if urlsplit(url).password is not None:
        raise _Error("appliance_mode kubernetes: appliance_database_url carries a password, which the "
                     "ConfigMap would show; remove it and put it in the Secret appliance_chart_database_secret")
    return {"type": "postgresql",
            "external": {"url": url, "existingSecret": str(settings.get("appliance_chart_database_secret") or "")}}


def _dashboard(settings: Mapping[str, Any]) -> dict[str, Any]:
    users = settings.get("appliance_dashboard_users") or []
    return {"enabled": bool(users), "port": int(settings["appliance_dashboard_port"]),
            "users": [{"name": u["name"], "role": u.get("role") or "viewer", "password-hash": u["password_hash"]}
                      for u in users]}


def appliance_chart_values(settings: Mapping[str, Any], triton_mode: str = "gpu") -> dict[str, Any]:
    """The chart's values for the inventory ``settings`` (``appliance_*`` names to their values, the
    role's defaults included), with ``appliance_chart_values`` merged on top (the cluster's own: image,
    Service type, storage classes, replicas). ``triton_mode``: the triton role's gpu or cpu."""
    _refuse_host_files(settings)
    values: dict[str, Any] = {
        "config": {
            "dicom": _dicom(settings),
            "completion": {"quiet-seconds": float(settings["appliance_quiet_seconds"])},
            "retention": _retention(settings),
            "worker": {"workers": int(settings["appliance_worker_workers"])},
        },
        "database": _database(settings),
        "dashboard": _dashboard(settings),
        "triton": {"mode": triton_mode},
    }
    # The combine filter's merge (recursive: mappings key by key, anything else replaced).
    return dict(merge_hash(values, dict(settings.get("appliance_chart_values") or {}), recursive=True))


class FilterModule:
    """Ansible's entry point for the filters of this file."""

    def filters(self) -> dict[str, Callable[..., Any]]:
        return {"appliance_chart_values": appliance_chart_values}
