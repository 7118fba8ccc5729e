"""Versioned migrations: applied once at start on both backends, old SQLite files adopted, newer ones refused."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from appliance.jobs import SCHEMA_VERSION, Database, JobState, JobStore, SchemaTooNew, migrate
from appliance.jobs.schema import status

#: The job store as the first releases wrote it (before migrations, leases and export tasks).
FIRST_RELEASE = """
CREATE TABLE jobs (id TEXT PRIMARY KEY, state TEXT NOT NULL, called_ae TEXT NOT NULL, calling_ae TEXT NOT NULL,
    study_uid TEXT NOT NULL, workflow TEXT NOT NULL, destinations TEXT NOT NULL, version INTEGER NOT NULL,
    instance_count INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL, updated_at REAL NOT NULL,
    last_instance_at REAL, ready_at REAL, finished_at REAL, attempt INTEGER NOT NULL DEFAULT 1, error TEXT,
    failed_phase TEXT);
CREATE TABLE stages (job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE, stage TEXT NOT NULL,
    status TEXT NOT NULL, detail TEXT NOT NULL, at REAL NOT NULL);
CREATE TABLE exports (job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE, destination TEXT NOT NULL,
    attempt INTEGER NOT NULL, outcome TEXT NOT NULL, sent INTEGER NOT NULL, failed INTEGER NOT NULL,
    detail TEXT NOT NULL, at REAL NOT NULL);
CREATE TABLE completion_requests (study_uid TEXT PRIMARY KEY, requested_at REAL NOT NULL);
"""
APPLIANCE = Path(sys.executable).with_name("appliance")


def test_a_first_release_file_is_adopted(tmp_path: Path) -> None:
    """Its rows stay valid; a job an old exporter was sending gets its export tasks."""
    path = tmp_path / "jobs.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(FIRST_RELEASE)
        db.execute("INSERT INTO jobs (id, state, called_ae, calling_ae, study_uid, workflow, destinations,"
                   " version, created_at, updated_at) VALUES ('J-1', 'failed', 'OrganSeg', 'X', '1.2', 'OrganSeg',"
                   " '[]', 1, 1, 1), ('J-2', 'sending', 'OrganSeg', 'X', '1.3', 'OrganSeg', '[\"PACS\"]', 1, 1, 1)")
        db.execute("INSERT INTO stages (job_id, stage, status, detail, at) VALUES ('J-1', 'copy', 'ok', '', 2)")
    assert f"schema version 0, {SCHEMA_VERSION} migration(s) to apply at start" in status(path)
    with JobStore(path) as store:
        job = store.get("J-1")
        (stage,) = store.stages("J-1")
        assert job.resumes == 0 and stage.status == "ok" and stage.started_at is None and stage.attempt is None
        assert store.retry("J-1").state is JobState.READY
        assert store.get("J-2").state is JobState.EXPORTING
        assert [(t.destination, t.state) for t in store.export_tasks("J-2")] == [("PACS", "pending")]
    with JobStore(path) as store:  # opening again changes nothing
        assert store.get("J-1").attempt == 2
    assert status(path).endswith(f"schema version {SCHEMA_VERSION} (current)")


def test_migrations_run_once_however_many_start_together(target: str | Path,
                                                         connect: Callable[[], Database]) -> None:
    dbs = [connect() for _ in range(4)]
    applied: list[int] = []
    threads = [threading.Thread(target=lambda db=db: applied.append(len(migrate(db)))) for db in dbs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(applied) == [0, 0, 0, SCHEMA_VERSION]
    assert [r[0] for r in dbs[0].read("SELECT version FROM schema_migrations ORDER BY version")] == list(
        range(1, SCHEMA_VERSION + 1))


def test_a_newer_schema_is_refused(target: str | Path) -> None:
    with JobStore(target) as store, store.db.transaction() as tx:
        tx.execute("INSERT INTO schema_migrations (version, description, applied_at) VALUES (?, 'future', 0)",
                   (SCHEMA_VERSION + 1,))
    with pytest.raises(SchemaTooNew, match="upgrade the appliance on this host"):
        JobStore(target)
    with pytest.raises(SchemaTooNew):
        status(target)


def test_check_reports_the_schema_and_creates_nothing(tmp_path: Path, target: str | Path) -> None:
    config = {"dicom": {"scp": {"ae-titles": [{"ae-title": "OrganSeg", "destinations": "none"}]}},
              "storage": {"root": str(tmp_path / "payloads")}}
    config["storage"]["database-url" if isinstance(target, str) else "database"] = str(target)
    path = tmp_path / "adapter.yaml"
    path.write_text(yaml.safe_dump(config))

    def check() -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(APPLIANCE), "exporter", "--check", "--config", str(path)],
                              capture_output=True, text=True, timeout=60)

    done = check()
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.splitlines()
    assert first == f"{path}: OK (destinations: none)"
    if isinstance(target, str):
        assert second.endswith(f"schema version 0, {SCHEMA_VERSION} migration(s) to apply at start"), second
    else:
        assert "not created yet" in second and not Path(target).exists()
    JobStore(target).close()
    assert check().stdout.splitlines()[1].endswith(f"schema version {SCHEMA_VERSION} (current)")
