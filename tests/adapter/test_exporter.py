"""The exporter is its own service: it starts, checks its configuration, and runs once per job store."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from adapterkit import APPLIANCE, Adapter, Exporter, base_config, free_port

from appliance.jobs import Intake, JobStore, PipelineQueue


def test_one_exporter_per_job_store(adapter_factory: Callable[..., Adapter], tmp_path: Path) -> None:
    adapter = adapter_factory()  # not started: the exporter needs no adapter
    first = Exporter(adapter.tmp, adapter.config).start()
    try:
        second = subprocess.run([str(APPLIANCE), "exporter", "--config", str(adapter.config_path)],
                                capture_output=True, text=True, timeout=30)
        assert second.returncode == 1
        assert "another appliance exporter uses this job store" in second.stdout
        assert first.stop() == 0 and "stopped" in first.log()
    finally:
        first.kill()


def test_check_names_the_destinations(tmp_path: Path) -> None:
    config = base_config(tmp_path, free_port())
    config["dicom"]["scu"]["destinations"] = [{"name": "PACS", "host-ip": "127.0.0.1", "port": 4242,
                                               "ae-title": "ORTHANC"}]
    path = tmp_path / "adapter.yaml"
    Exporter(tmp_path, config)  # writes the file
    done = subprocess.run([str(APPLIANCE), "exporter", "--config", str(path), "--check"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == f"{path}: OK (destinations: PACS)"


def test_exporter_prunes_delivered_jobs_by_age_and_jobs_cli_shows_it(tmp_path: Path) -> None:
    config = base_config(tmp_path, free_port())
    config["retention"] = {"max-age-days": 1, "interval-seconds": 1}
    exporter = Exporter(tmp_path, config)  # writes the file
    root = Path(config["storage"]["root"])
    with JobStore(root / "jobs.sqlite3") as store:
        for job_id in ("OLD", "NEW", "WAITING"):
            Intake(store.db).create(job_id, called_ae="OrganSeg", calling_ae="X", study_uid=f"1.{len(job_id)}",
                                    workflow="organ-seg", destinations=())
            Intake(store.db).mark_ready(job_id, 1)
            (root / job_id / "input").mkdir(parents=True)
            (root / job_id / "input" / "1.dcm").write_bytes(b"\0" * 4096)
        queue = PipelineQueue(store.db, "w", 30)
        for _ in ("OLD", "NEW"):
            job = queue.claim()
            assert job is not None
            queue.hand_over(job)  # no destination: done at once
        with store.db.transaction() as tx:
            tx.execute("UPDATE jobs SET finished_at = finished_at - 2 * 86400 WHERE id = 'OLD'")
    exporter.start()
    try:
        audited = "retention: job OLD pruned (age: finished 2.0 day(s) ago; limit 1), 4096 bytes freed"
        deadline = time.monotonic() + 20
        while audited not in exporter.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert audited in exporter.log()
        assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["NEW", "WAITING"]
    finally:
        assert exporter.stop() == 0
    shown = subprocess.run([str(APPLIANCE), "jobs", "--config", str(exporter.config_path), "retention"],
                           capture_output=True, text=True, timeout=30, check=True).stdout.splitlines()
    assert shown[0] == ("retention: keep delivered jobs 1 day(s); failed jobs until an operator acts;"
                        " 1 job(s) pruned so far, 4.0 KiB freed")
    assert " OLD age: finished 2.0 day(s) ago; limit 1 (4.0 KiB)" in shown[1]
    listed = subprocess.run([str(APPLIANCE), "jobs", "--config", str(exporter.config_path), "list"],
                            capture_output=True, text=True, timeout=30, check=True).stdout.splitlines()
    assert listed[-1] == shown[0]
