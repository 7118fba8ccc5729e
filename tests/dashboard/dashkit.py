"""Helpers for the dashboard tests and benchmarks/dashboard.py: users with known passwords, a
configuration, and finished jobs made with the real reader and writer stages (no model server:
the phantom's ground truth stands in for the model's labels)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from appliance.dashboard.auth import hash_password
from appliance.jobs import ExportQueue, ExportRecord, Intake, Job, JobState, JobStore, PipelineQueue, StageRecord
from appliance.phantom import PhantomFiles
from appliance.pipeline.reader import read_series
from appliance.pipeline.writer import write_outputs
from appliance.storage import PayloadLayout
from appliance.workflows import shipped_workflows

#: name -> (password, role)
USERS = {"alice": ("alice-secret", "admin"), "olga": ("olga-secret", "operator"), "vic": ("vic-secret", "viewer")}
_HASHES: dict[str, str] = {}


def users() -> list[dict[str, str]]:
    """``dashboard.users`` for :data:`USERS` (hashed once per process)."""
    for name, (password, _) in USERS.items():
        _HASHES.setdefault(name, hash_password(password))
    return [{"name": n, "password-hash": _HASHES[n], "role": role} for n, (_, role) in USERS.items()]


def dashboard_config(root: Path, port: int = 8443, destinations: list[dict[str, Any]] | None = None,
                     **dashboard: Any) -> dict[str, Any]:
    """A configuration (AE titles OrganSeg and LiverSeg) with the dashboard's users; ``dashboard``
    keys with ``_`` for ``-``."""
    dests = destinations if destinations is not None else [
        {"name": "PACS", "host-ip": "127.0.0.1", "port": 1, "ae-title": "PACS"},
        {"name": "ARCHIVE", "host-ip": "127.0.0.1", "port": 2, "ae-title": "ARCHIVE"}]
    names = [d["name"] for d in dests]
    return {
        "dicom": {"scp": {"port": 11112, "bind-address": "127.0.0.1", "ae-titles": [
            {"ae-title": "OrganSeg", "workflow": "OrganSeg", "destinations": names[:1] or "none"},
            {"ae-title": "LiverSeg", "workflow": "LiverSeg", "destinations": names[:1] or "none"}]},
            "scu": {"ae-title": "ClaraSCU", "destinations": dests}},
        "storage": {"root": str(root)},
        "dashboard": {"bind-address": "127.0.0.1", "port": port, "users": users(),
                      **{k.replace("_", "-"): v for k, v in dashboard.items()}},
    }


#: The owners the helpers claim jobs and export tasks as (a test can act as that worker afterwards).
WORKER = "dashkit-worker"
EXPORTER = "dashkit-exporter"
LEASE_SECONDS = 3600.0


def make_job(store: JobStore, job_id: str, *, study_uid: str = "1.2.3", called: str = "OrganSeg",
             state: JobState = JobState.READY, destinations: tuple[str, ...] = ("PACS",), instances: int = 40,
             calling_address: str = "127.0.0.1", phase: str = "export", failed_to: tuple[str, ...] | None = None
             ) -> Job:
    """A job moved along the real life cycle to ``state`` through the services' own queues (records as
    they would write them); a failed one fails in ``phase`` (``pipeline``: at inference, or ``export``:
    to ``failed_to``, all destinations when None)."""
    intake = Intake(store.db)
    intake.create(job_id, called_ae=called, calling_ae="STORESCU", study_uid=study_uid, workflow=called,
                  destinations=destinations, calling_address=calling_address)
    with store.db.transaction() as tx:  # what an adapter's grouping tick records while it receives
        tx.execute("UPDATE jobs SET instance_count = ?, last_instance_at = ? WHERE id = ?",
                   (instances, time.time(), job_id))
    if state is JobState.RECEIVING:
        return store.get(job_id)
    intake.mark_ready(job_id, instances)
    if state is JobState.READY:
        return store.get(job_id)
    queue = PipelineQueue(store.db, WORKER, LEASE_SECONDS)
    job = queue.claim()
    assert job is not None and job.id == job_id, job
    if state is JobState.RUNNING:
        return job
    for stage in ("reader", "inference", "writer", "export"):
        t = time.time()
        record_id = queue.start_stage(job, stage, started_at=t)
        failed = state is JobState.FAILED and phase == "pipeline" and stage == "inference"
        queue.finish_stage(record_id, StageRecord(stage, "failed" if failed else "succeeded",
                                                  "ServerUnavailableError: down" if failed else "", t, t + 0.01, 0.01))
        if failed:
            return queue.fail(job, "inference: down")
    job = queue.hand_over(job)
    if state is JobState.EXPORTING or job.state is not JobState.EXPORTING:
        return job
    exports = ExportQueue(store.db, EXPORTER, LEASE_SECONDS)
    failing = (destinations if failed_to is None else failed_to) if state is JobState.FAILED else ()
    for name in destinations:
        task = exports.claim(name, max_tries=1)
        assert task is not None and task.job_id == job_id, task
        outcome = "failed" if name in failing else "sent"
        exports.finish(task, outcome, ExportRecord(job_id, name, task.tries, outcome, int(outcome == "sent"),
                                                   int(outcome == "failed"), "no association" if name in failing
                                                   else "", time.time()))
    return store.get(job_id)


def add_result(layout: PayloadLayout, job_id: str, phantom: PhantomFiles, workflow: str = "OrganSeg") -> Path:
    """Put ``phantom`` into the job's folder as the adapter, reader and writer would; return the SEG."""
    wf = shipped_workflows()[workflow]
    shutil.copytree(phantom.series_dir, layout.input_dir(job_id), dirs_exist_ok=True)
    reader = read_series(layout.input_dir(job_id), wf.reader, layout.payload_dir(job_id) / "reader")
    artifacts, _ = write_outputs(reader.manifest, phantom.ground_truth, wf, layout.payload_dir(job_id) / "writer")
    layout.output_dir(job_id).mkdir(parents=True, exist_ok=True)
    seg = layout.output_dir(job_id) / "seg.dcm"
    shutil.copy(artifacts["seg"], seg)
    return seg


def log_in(client: TestClient, user: str) -> TestClient:
    """Log ``user`` in through the login form; the client keeps the session cookie."""
    page = client.get("/login")
    token = page.text.split('name="login_token" value="', 1)[1].split('"', 1)[0]
    done = client.post("/login", data={"user": user, "password": USERS[user][0], "login_token": token, "next": "/"},
                       follow_redirects=False)
    assert done.status_code == 303, done.text
    return client


def csrf(client: TestClient, path: str = "/") -> str:
    """The session's CSRF token, as a page carries it."""
    page = client.get(path)
    return page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
