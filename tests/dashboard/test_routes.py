"""Route tests: pages, login, roles, CSRF, actions taking effect in the job store, health, metrics."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from dashkit import LEASE_SECONDS, WORKER, add_result, csrf, log_in, make_job
from starlette.testclient import TestClient

from appliance.dashboard.app import CSP
from appliance.jobs import ExportQueue, Intake, JobState, JobStore, LeaseLost, PipelineQueue, control
from appliance.phantom import PhantomFiles
from appliance.settings import AdapterConfig
from appliance.storage import PayloadLayout


def store_of(config: AdapterConfig) -> JobStore:
    return JobStore(config.storage.job_store)


def worker(store: JobStore) -> PipelineQueue:
    """The worker queue as the worker that claimed make_job's jobs."""
    return PipelineQueue(store.db, WORKER, LEASE_SECONDS)


def tasks(store: JobStore, job_id: str) -> dict[str, str]:
    return {t.destination: t.state for t in store.export_tasks(job_id)}


def test_pages_need_a_login_and_carry_the_csp(client: TestClient) -> None:
    for path in ("/", "/health", "/jobs/X-1", "/audit", "/jobs/X-1/viewer"):
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next="), path
    r = client.get("/login")
    assert r.headers["content-security-policy"] == CSP
    assert "'self'" in CSP and "unsafe" not in CSP and "http" not in CSP
    assert r.headers["x-frame-options"] == "DENY"
    assert client.post("/jobs/X-1/retry", data={"csrf": "x"}).status_code == 401
    assert client.get("/events").status_code == 401


def test_login_rejects_wrong_passwords_and_forged_forms(client: TestClient, config: AdapterConfig) -> None:
    page = client.get("/login")
    token = page.text.split('name="login_token" value="', 1)[1].split('"', 1)[0]
    bad = client.post("/login", data={"user": "alice", "password": "nope", "login_token": token, "next": "/"})
    assert bad.status_code == 401 and "Wrong user name or password" in bad.text
    assert client.post("/login", data={"user": "alice", "password": "alice-secret", "login_token": "forged"},
                       follow_redirects=False).status_code == 403
    # An open redirect through ?next= is not possible.
    token = client.get("/login").text.split('name="login_token" value="', 1)[1].split('"', 1)[0]
    ok = client.post("/login", data={"user": "alice", "password": "alice-secret", "login_token": token,
                                     "next": "//evil.example/x"}, follow_redirects=False)
    assert ok.status_code == 303 and ok.headers["location"] == "/"
    cookie = ok.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    with store_of(config) as store:
        outcomes = [(e.user, e.action, e.outcome.split(":")[0]) for e in control.audit_log(store.db)]
    assert ("alice", "login", "refused") in outcomes and ("alice", "login", "ok") in outcomes


def test_the_list_shows_jobs_with_filters_and_search(client: TestClient, config: AdapterConfig,
                                                     phantom: PhantomFiles) -> None:
    with store_of(config) as store:
        make_job(store, "OrganSeg-1", state=JobState.DONE, study_uid="1.2.1")
        make_job(store, "LiverSeg-2", called="LiverSeg", state=JobState.FAILED, study_uid="1.2.2",
                 calling_address="10.1.2.3")
        make_job(store, "OrganSeg-3", state=JobState.RECEIVING, study_uid="1.2.3")
    add_result(PayloadLayout(config.storage.root), "OrganSeg-1", phantom)
    log_in(client, "vic")
    page = client.get("/").text
    assert page.index("OrganSeg-3") < page.index("LiverSeg-2") < page.index("OrganSeg-1")  # newest first
    row = re.search(r'<tr id="job-OrganSeg-1".*?</tr>', page, re.S)
    assert row is not None
    cells = [re.sub(r"<[^>]+>", " ", c).split() for c in re.findall(r"<td[^>]*>(.*?)</td>", row.group(0), re.S)]
    # state, ID, AE, from (AE + IP), patient (name + ID), accession, study date, in, out, age
    assert cells[0] == ["done"] and cells[2] == ["OrganSeg"] and cells[3] == ["STORESCU", "127.0.0.1"]
    assert cells[4] and cells[7] == ["40"] and cells[8] == ["1"]
    assert "10.1.2.3" in page
    failed = client.get("/?state=failed").text
    assert "LiverSeg-2" in failed and "OrganSeg-1" not in failed and "OrganSeg-3" not in failed
    by_ae = client.get("/?ae=LiverSeg").text
    assert "LiverSeg-2" in by_ae and "OrganSeg-1" not in by_ae
    by_ip = client.get("/?q=10.1.2").text
    assert "LiverSeg-2" in by_ip and "OrganSeg-1" not in by_ip
    patient = client.get("/jobs/OrganSeg-1").text
    name = re.search(r"<dt>Patient</dt><dd>([^<]+)<", patient)
    assert name is not None and name.group(1).strip()
    by_patient = client.get("/", params={"q": name.group(1).strip()[:5]}).text
    assert "OrganSeg-1" in by_patient and "LiverSeg-2" not in by_patient


def test_the_job_page_shows_the_id_once_its_timeline_result_and_log(client: TestClient, config: AdapterConfig,
                                                                       phantom: PhantomFiles, tmp_path: Path) -> None:
    with store_of(config) as store:
        make_job(store, "OrganSeg-20261201T000000-abcd1234", state=JobState.DONE, study_uid=phantom.study_uid)
    add_result(PayloadLayout(config.storage.root), "OrganSeg-20261201T000000-abcd1234", phantom)
    log_in(client, "vic")
    page = client.get("/jobs/OrganSeg-20261201T000000-abcd1234").text
    main = page.split("<main>", 1)[1]
    # The job ID is the payload folder and shows once (the log and audit sections quote it as data).
    assert main.split('<section>', 1)[0].count("OrganSeg-20261201T000000-abcd1234") == 2  # heading + data attribute
    assert f"under <code>{config.storage.root}</code>" in page
    steps = re.findall(r'data-step="([^"]+)"', page)
    assert steps[:3] == ["receiving", "quiet window", "queue"]
    assert steps[3:] == ["reader", "inference", "writer", "export", "export to PACS"]
    segments = re.findall(r"<td><span class=\"swatch\" data-color=\"(#[0-9a-f]{6})\"></span>(\w+)</td>\s*"
                          r"<td class=\"num\">([0-9.]+) mL", page)
    assert [s[1] for s in segments] == ["Liver", "Spleen", "Kidneys"]
    assert all(float(s[2]) > 1 for s in segments)
    for name in ("mip", "axial", "coronal", "sagittal"):
        png = client.get(f"/jobs/OrganSeg-20261201T000000-abcd1234/preview/{name}.png")
        assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n", name
    assert "(no journalctl on this host" in page or "log" in page
    assert client.get("/jobs/nope-1").status_code == 404
    assert client.get("/jobs/..%2Fetc").status_code in (404, 405)  # never a file outside the store


def test_a_viewer_account_cannot_act(client: TestClient, config: AdapterConfig) -> None:
    with store_of(config) as store:
        make_job(store, "OrganSeg-1", state=JobState.FAILED, phase="pipeline")
    log_in(client, "vic")
    page = client.get("/jobs/OrganSeg-1").text
    assert 'id="retry"' not in page and "can look but not change jobs" in page
    token = csrf(client, "/jobs/OrganSeg-1")
    for action in ("retry", "cancel", "retry-export"):
        r = client.post(f"/jobs/OrganSeg-1/{action}", data={"csrf": token}, follow_redirects=False)
        assert r.status_code == 403, action
    assert client.post("/intake/OrganSeg/pause", data={"csrf": token}).status_code == 403
    with store_of(config) as store:
        assert store.get("OrganSeg-1").state is JobState.FAILED
        assert control.paused_titles(store.db) == {}
        refused = [e for e in control.audit_log(store.db) if e.action == "retry"]
    assert refused and refused[0].user == "vic" and refused[0].outcome.startswith("refused: your role (viewer)")
    assert client.get("/audit").status_code == 403


def test_actions_need_the_csrf_token(client: TestClient, config: AdapterConfig) -> None:
    with store_of(config) as store:
        make_job(store, "OrganSeg-1", state=JobState.FAILED, phase="pipeline")
    log_in(client, "olga")
    assert client.post("/jobs/OrganSeg-1/retry", data={}).status_code == 403
    assert client.post("/jobs/OrganSeg-1/retry", data={"csrf": "wrong"}).status_code == 403
    token = csrf(client)
    other_site = client.post("/jobs/OrganSeg-1/retry", data={"csrf": token},
                             headers={"Origin": "https://evil.example"})
    assert other_site.status_code == 403
    with store_of(config) as store:
        assert store.get("OrganSeg-1").state is JobState.FAILED


def test_retry_pipeline_runs_the_job_again(client: TestClient, config: AdapterConfig) -> None:
    with store_of(config) as store:
        make_job(store, "OrganSeg-1", state=JobState.FAILED, phase="pipeline")
    log_in(client, "olga")
    r = client.post("/jobs/OrganSeg-1/retry", data={"csrf": csrf(client)}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/jobs/OrganSeg-1"
    with store_of(config) as store:
        job = store.get("OrganSeg-1")
        assert job.state is JobState.READY and job.attempt == 2 and job.error is None
        # ... and the worker's queue hands it out again.
        assert worker(store).claim() is not None
        entry = control.audit_log(store.db, "OrganSeg-1")[0]
    assert (entry.user, entry.action, entry.outcome) == ("olga", "retry", "ok")
    assert "attempt 2" in client.get("/jobs/OrganSeg-1").text


def test_retry_export_only_resends_to_the_failed_destinations(client: TestClient, config: AdapterConfig,
                                                              phantom: PhantomFiles) -> None:
    with store_of(config) as store:
        # PACS got it; ARCHIVE did not.
        make_job(store, "OrganSeg-1", state=JobState.FAILED, destinations=("PACS", "ARCHIVE"), failed_to=("ARCHIVE",))
    log_in(client, "olga")
    token = csrf(client)
    no_results = client.post("/jobs/OrganSeg-1/retry-export", data={"csrf": token})
    assert "refused: the job has no results" in no_results.text
    add_result(PayloadLayout(config.storage.root), "OrganSeg-1", phantom)
    client.post("/jobs/OrganSeg-1/retry-export", data={"csrf": token})
    with store_of(config) as store:
        job = store.get("OrganSeg-1")
        assert job.state is JobState.EXPORTING and job.attempt == 2
        assert tasks(store, "OrganSeg-1") == {"PACS": "sent", "ARCHIVE": "pending"}
        exporter = ExportQueue(store.db, "exporter", LEASE_SECONDS)
        assert exporter.claim("PACS", 3) is None  # nothing is sent twice
        assert exporter.claim("ARCHIVE", 3) is not None  # the exporter takes it


def test_send_to_another_destination(client: TestClient, config: AdapterConfig, phantom: PhantomFiles) -> None:
    with store_of(config) as store:
        make_job(store, "OrganSeg-1", state=JobState.DONE)
    add_result(PayloadLayout(config.storage.root), "OrganSeg-1", phantom)
    log_in(client, "olga")
    token = csrf(client)
    assert "unknown destination" in client.post("/jobs/OrganSeg-1/send", data={"csrf": token,
                                                                              "destination": "NOPE"}).text
    client.post("/jobs/OrganSeg-1/send", data={"csrf": token, "destination": "ARCHIVE"})
    with store_of(config) as store:
        job = store.get("OrganSeg-1")
        assert tasks(store, "OrganSeg-1") == {"PACS": "sent", "ARCHIVE": "pending"}
    assert job.state is JobState.EXPORTING and job.attempt == 2
    assert job.destinations == ("PACS", "ARCHIVE")


def test_cancel_stops_a_job_and_a_late_service_move_cannot_revive_it(client: TestClient,
                                                                     config: AdapterConfig) -> None:
    with store_of(config) as store:
        make_job(store, "OrganSeg-1", state=JobState.RUNNING)
        make_job(store, "OrganSeg-3", state=JobState.EXPORTING, study_uid="8.8")
        make_job(store, "OrganSeg-2", state=JobState.READY, study_uid="9.9")
        running = store.get("OrganSeg-1")
    log_in(client, "olga")
    token = csrf(client)
    client.post("/jobs/OrganSeg-1/cancel", data={"csrf": token, "reason": "wrong patient"})
    client.post("/jobs/OrganSeg-2/cancel", data={"csrf": token})
    client.post("/jobs/OrganSeg-3/cancel", data={"csrf": token})
    with store_of(config) as store:
        job = store.get("OrganSeg-1")
        assert job.state is JobState.CANCELLED and job.error == "cancelled by olga: wrong patient"
        # The worker lost its lease: its renewal says so, and finishing its stages afterwards is refused.
        assert worker(store).renew([running.id]) == set()
        with pytest.raises(LeaseLost):
            worker(store).hand_over(running)
        assert store.get("OrganSeg-1").state is JobState.CANCELLED
        assert worker(store).claim() is None  # the cancelled ready job is not handed out
        # The exporting job's task is cancelled: no exporter takes it.
        assert tasks(store, "OrganSeg-3") == {"PACS": "cancelled"}
        assert ExportQueue(store.db, "exporter", LEASE_SECONDS).claim("PACS", 3) is None
    page = client.post("/jobs/OrganSeg-1/cancel", data={"csrf": token}).text
    assert "cancel refused" in page and "cannot be cancelled" in page


def test_mark_a_study_complete(client: TestClient, config: AdapterConfig) -> None:
    with store_of(config) as store:
        make_job(store, "OrganSeg-1", state=JobState.RECEIVING, study_uid="1.2.3.4")
    log_in(client, "olga")
    assert 'id="complete"' in client.get("/jobs/OrganSeg-1").text
    client.post("/jobs/OrganSeg-1/complete", data={"csrf": csrf(client)})
    with store_of(config) as store:
        # What the adapter reads at its next tick (tests/dashboard/test_adapter_intake.py runs a real one).
        assert Intake(store.db).take_completion_requests() == ["1.2.3.4"]


def test_pause_and_resume_intake(client: TestClient, config: AdapterConfig) -> None:
    log_in(client, "olga")
    token = csrf(client, "/health")
    client.post("/intake/OrganSeg/pause", data={"csrf": token, "reason": "PACS migration"})
    with store_of(config) as store:
        pause = control.paused_titles(store.db)["OrganSeg"]
    assert pause.paused_by == "olga" and pause.reason == "PACS migration"
    page = client.get("/health").text
    assert re.search(r'data-ae="OrganSeg".*?paused</span> by olga', page, re.S)
    assert "not one of our AE titles" in client.post("/intake/NOPE/pause", data={"csrf": token}).text
    client.post("/intake/OrganSeg/resume", data={"csrf": token})
    with store_of(config) as store:
        assert control.paused_titles(store.db) == {}


def test_health_without_services_gpu_or_triton(client: TestClient, config: AdapterConfig) -> None:
    log_in(client, "vic")
    page = client.get("/health").text
    for name in ("adapter", "worker", "exporter"):
        assert re.search(rf'data-service="{name}".*?never seen', page, re.S), name
    assert "no GPU" in page
    assert re.search(r"OrganSeg</td><td>organ_seg_ct</td>", page)
    assert "% free" in page
    r = client.post("/health/echo/PACS", data={"csrf": csrf(client, "/health")})
    assert "C-ECHO PACS" in r.text and "FAILED" in r.text


def test_healthz_and_metrics(client: TestClient, config: AdapterConfig) -> None:
    with store_of(config) as store:
        make_job(store, "OrganSeg-1", state=JobState.DONE)
        make_job(store, "OrganSeg-2", state=JobState.FAILED, study_uid="2.2")
    assert client.get("/healthz").json() == {"status": "ok"}
    text = client.get("/metrics")
    assert text.headers["content-type"].startswith("text/plain; version=0.0.4")
    body = text.text
    assert 'appliance_jobs{state="done"} 1' in body and 'appliance_jobs{state="failed"} 1' in body
    assert 'appliance_stage_duration_seconds_bucket{stage="reader",le="+Inf"} 2' in body
    assert "appliance_instances_received_total 80" in body
    assert 'appliance_export_tries_total{destination="PACS",outcome="failed"} 1' in body
    assert 'appliance_service_up{service="adapter",host=""} 0' in body


@pytest.mark.parametrize("user", ["alice"])
def test_the_audit_log_is_for_admins(client: TestClient, config: AdapterConfig, user: str) -> None:
    log_in(client, user)
    page = client.get("/audit").text
    assert "login" in page and "alice" in page


def test_the_event_stream_sends_changed_rows(client: TestClient, config: AdapterConfig) -> None:
    log_in(client, "vic")
    with client.stream("GET", "/events?state=done") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.iter_lines()
        assert next(lines) == "retry: 2000"  # subscribed from here on
        with store_of(config) as store:
            job = make_job(store, "OrganSeg-1", state=JobState.RUNNING)
            worker(store).fail(job, "x")
        events = []
        for line in lines:
            if line.startswith(": keep-alive"):
                break  # 15 s without the change: fail below
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
                if events[-1]["state"] == "failed":
                    break
    assert events and events[-1]["id"] == "OrganSeg-1"
    # Not in the filtered list (state=done): the row is to be removed, not shown.
    assert events[-1]["html"] == ""


def test_gpus_through_nvml() -> None:
    from appliance.dashboard import health

    gpus, note = health.gpus()
    if not gpus:
        pytest.skip(f"no NVIDIA GPU on this machine ({note}); test_health_without_services_gpu_or_triton covers it")
    assert all(g.name and g.memory_total_mib > 0 and g.driver for g in gpus)


def test_the_viewer_gets_the_ct_and_each_segment_on_its_grid(client: TestClient, config: AdapterConfig,
                                                             phantom: PhantomFiles, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import SimpleITK as sitk

    from appliance.dashboard import viewer

    with store_of(config) as store:
        make_job(store, "OrganSeg-1", state=JobState.DONE)
    add_result(PayloadLayout(config.storage.root), "OrganSeg-1", phantom)
    log_in(client, "vic")
    assert 'id="gl"' in client.get("/jobs/OrganSeg-1/viewer").text
    info = client.get("/jobs/OrganSeg-1/viewer/segments.json").json()
    assert info["layers"] and [s["label"] for s in info["segments"]] == ["Liver", "Spleen", "Kidneys"]
    truth = sitk.ReadImage(str(phantom.ground_truth))
    for s in info["segments"]:
        path = tmp_path / s["file"]
        path.write_bytes(client.get(f"/jobs/OrganSeg-1/viewer/{s['file']}").content)
        mask = sitk.ReadImage(str(path))
        # Every voxel of the cropped mask lands, by its own geometry, on that segment in the truth.
        inside = [mask.TransformIndexToPhysicalPoint([int(v) for v in idx[::-1]])
                  for idx in np.argwhere(sitk.GetArrayViewFromImage(mask))]
        hits = [truth[truth.TransformPhysicalPointToIndex(p)] == s["number"] for p in inside[::50]]
        assert hits and all(hits), s["label"]
    ct = tmp_path / "ct.nii.gz"
    ct.write_bytes(client.get("/jobs/OrganSeg-1/viewer/ct.nii.gz").content)
    assert sitk.ReadImage(str(ct)).GetSize() == truth.GetSize()
    assert client.get("/jobs/OrganSeg-1/viewer/labels.nii.gz").status_code == 404  # layers instead
    assert client.get("/jobs/OrganSeg-1/viewer/..%2Fjobs.sqlite3").status_code == 404
    # A SEG with more segments than layers: one label volume for all.
    monkeypatch.setattr(viewer, "MAX_LAYERS", 2)
    with store_of(config) as store:
        make_job(store, "OrganSeg-2", state=JobState.DONE, study_uid="7.7")
    add_result(PayloadLayout(config.storage.root), "OrganSeg-2", phantom)
    info = client.get("/jobs/OrganSeg-2/viewer/segments.json").json()
    assert not info["layers"] and all(s["file"] is None for s in info["segments"])
    labels = tmp_path / "labels.nii.gz"
    labels.write_bytes(client.get("/jobs/OrganSeg-2/viewer/labels.nii.gz").content)
    assert (sitk.GetArrayFromImage(sitk.ReadImage(str(labels))) == sitk.GetArrayFromImage(truth)).all()
