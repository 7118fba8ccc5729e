"""Verify a host converged by site.yml with the sandbox choices."""

from __future__ import annotations

import json
import re
import time

import pydicom
import pytest

from harness import roundtrip
from harness.hostchecks import other_release_packages


def test_preflight_facts_saved(host) -> None:  # type: ignore[no-untyped-def]
    assert json.loads(host.file("/etc/ansible/facts.d/preflight.fact").content_string)["gpu_count"] == 0


def test_engine_active_with_nvidia_runtime(host) -> None:  # type: ignore[no-untyped-def]
    for unit in ("docker", "containerd"):
        assert host.service(unit).is_running and host.service(unit).is_enabled
    assert "nvidia" in json.loads(host.check_output("docker info --format '{{json .Runtimes}}'"))


def test_configs_valid(host) -> None:  # type: ignore[no-untyped-def]
    json.loads(host.file("/etc/docker/daemon.json").content_string)
    assert host.run("containerd config dump").rc == 0


# --- Triton and the appliance ---

APPLIANCE = "/opt/appliance/venv/bin/appliance"
CONFIG = "/etc/appliance/adapter.yaml"
#: The appliance's services: DICOM in, the pipeline, DICOM out, and the dashboard.
APPLIANCE_UNITS = ("appliance-adapter", "appliance-worker", "appliance-exporter", "appliance-dashboard")


def test_services_active_and_enabled(host) -> None:  # type: ignore[no-untyped-def]
    for unit in ("triton", *APPLIANCE_UNITS):
        service = host.service(unit)
        assert service.is_running and service.is_enabled, unit


def test_services_run_as_the_service_user(host) -> None:  # type: ignore[no-untyped-def]
    for unit in ("triton", *APPLIANCE_UNITS):
        pid = host.check_output(f"systemctl show -p MainPID --value {unit}")
        assert host.check_output(f"ps -o user= -p {pid}") == "appliance", unit


def test_ports_listening(host) -> None:  # type: ignore[no-untyped-def]
    assert host.socket("tcp://0.0.0.0:104").is_listening
    assert host.socket("tcp://0.0.0.0:8443").is_listening  # the dashboard (HTTPS)
    for port in (8000, 8001, 8002):
        assert host.socket(f"tcp://127.0.0.1:{port}").is_listening
        # Triton answers the local worker only.
        assert not host.socket(f"tcp://0.0.0.0:{port}").is_listening


def test_config_valid(host) -> None:  # type: ignore[no-untyped-def]
    out = host.run(f"{APPLIANCE} worker --check --config {CONFIG}")
    assert out.rc == 0, out.stderr
    assert "OrganSeg->OrganSeg" in out.stdout
    out = host.run(f"{APPLIANCE} exporter --check --config {CONFIG}")
    assert out.rc == 0 and "(destinations: WORKSTATION)" in out.stdout, out.stderr


def test_virtualenv_python_in_range_and_nothing_else_from_another_release(host) -> None:  # type: ignore[no-untyped-def]
    # On 26.04 the interpreter is 24.04's, from the role's pinned apt source; elsewhere the host's own.
    version = host.check_output("/opt/appliance/venv/bin/python -c 'import platform; print(platform.python_version())'")
    version = version.rsplit(".", 1)[0]
    assert version in ("3.10", "3.11", "3.12")
    foreign = other_release_packages(host.check_output("apt list --installed 2>/dev/null"), host.system_info.codename)
    assert all(re.match(rf"(lib)?python{re.escape(version)}(\b|-|t64)", name) for name in foreign), foreign
    assert host.run("apt-get check").rc == 0


def test_hardening_scores(host) -> None:  # type: ignore[no-untyped-def]
    for unit in APPLIANCE_UNITS:
        out = host.check_output(f"systemd-analyze security --no-pager {unit}.service")
        score = float(re.search(r"Overall exposure level for \S+: ([0-9.]+)", out).group(1))  # type: ignore[union-attr]
        assert score <= 5.0, f"{unit}: exposure {score}"


def test_study_from_outside_comes_back_as_seg(host, tmp_path) -> None:  # type: ignore[no-untyped-def]
    report = roundtrip.roundtrip(host.backend.get_hostname(), "OrganSeg", tmp_path, timeout_s=240)
    seg = pydicom.dcmread(report.seg_path)
    assert seg.Modality == "SEG" and seg.StudyInstanceUID == report.study_uid
    assert report.job["state"] == "done" and report.job["instance_count"] == report.instances
    assert [s["stage"] for s in report.job["stages"] if s["status"] == "succeeded"][:3] == ["reader", "inference",
                                                                                               "writer"]


def test_unknown_source_is_refused(host, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _, files = roundtrip.make_study(tmp_path / "study", slices=8)
    address = roundtrip.container_ip(host.backend.get_hostname())
    with pytest.raises(RuntimeError, match="failed"):
        roundtrip.push(address, 104, "OrganSeg", files, calling_ae="STRANGER")


def test_restart_mid_study_loses_nothing_acknowledged(host, tmp_path) -> None:  # type: ignore[no-untyped-def]
    container = host.backend.get_hostname()
    address = roundtrip.container_ip(container)
    study_uid, files = roundtrip.make_study(tmp_path / "study", slices=40)
    roundtrip.push(address, 104, "OrganSeg", files[:20])
    host.check_output(f"systemctl restart {' '.join(APPLIANCE_UNITS)}")
    roundtrip.push(address, 104, "OrganSeg", files[20:])
    deadline = time.monotonic() + 120
    while True:
        jobs = roundtrip.jobs_of_study(container, study_uid)
        if jobs and all(job["state"] != "receiving" for job in jobs):
            break
        assert time.monotonic() < deadline, f"jobs of the study still receiving: {jobs}"
        time.sleep(1)
    # Every acknowledged instance is in a job, and on disk in that job's payload folder.
    assert sum(job["instance_count"] for job in jobs) == 40, jobs
    on_disk = sum(int(host.check_output(f"ls /var/lib/appliance/payloads/{job['id']}/input | wc -l"))
                  for job in jobs)
    assert on_disk == 40, jobs


def test_dashboard_over_https_with_a_login(host, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """From this machine (the only network the inventory opens it to): the role's certificate names
    the host's address, the login form works, and the jobs list shows the round trip's job."""
    import httpx2

    container = host.backend.get_hostname()
    address = roundtrip.container_ip(container)
    certificate = tmp_path / "dashboard.crt"
    certificate.write_text(host.file("/etc/appliance/tls/dashboard.crt").content_string)
    with httpx2.Client(base_url=f"https://{address}:8443", verify=str(certificate), timeout=30) as client:
        with pytest.raises(httpx2.HTTPError):
            httpx2.get(f"http://{address}:8443/login", timeout=5).raise_for_status()  # HTTPS only
        page = client.get("/login")
        assert page.status_code == 200 and "content-security-policy" in page.headers
        token = re.search(r'name="login_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        done = client.post("/login", data={"user": "operator", "password": "sandbox-demo", "login_token": token,
                                           "next": "/"}, headers={"Origin": f"https://{address}:8443"})
        assert done.status_code == 303 and "Secure" in done.headers["set-cookie"], done.text
        jobs = client.get("/")
        assert jobs.status_code == 200 and "operator" in jobs.text and 'id="jobs"' in jobs.text
        assert client.get("/healthz").json() == {"status": "ok"}
