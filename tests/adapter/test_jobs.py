"""Grouping into jobs: quiet window, explicit completion, new versions, restart, CLI."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from adapterkit import Adapter, storescu
from ctseries import write_series


def test_late_instances_make_a_new_job_version(adapter: Adapter, tmp_path: Path) -> None:
    study = write_series(tmp_path / "a", 3, rows=64, cols=64)
    late = write_series(tmp_path / "b", 2, rows=64, cols=64, study_uid=study.study_uid)
    assert storescu(adapter.port, study.files).returncode == 0
    (first,) = adapter.wait_jobs("ready", 1)
    assert storescu(adapter.port, late.files).returncode == 0
    jobs = adapter.wait_jobs("ready", 2)
    second = next(j for j in jobs if j["id"] != first["id"])
    assert (first["version"], first["instance_count"]) == (1, 3)
    assert (second["version"], second["instance_count"]) == (2, 2)
    assert len(list((adapter.root / first["id"] / "input").iterdir())) == 3


def test_same_study_on_two_ae_titles_is_two_jobs(adapter: Adapter, tmp_path: Path) -> None:
    study = write_series(tmp_path / "a", 2, rows=64, cols=64)
    assert storescu(adapter.port, study.files, "OrganSeg").returncode == 0
    assert storescu(adapter.port, study.files, "LiverSeg").returncode == 0
    jobs = adapter.wait_jobs("ready", 2)
    assert sorted((j["called_ae"], j["workflow"]) for j in jobs) == [
        ("LiverSeg", "liver-seg"), ("OrganSeg", "organ-seg")]


def test_complete_command_ends_the_quiet_window(adapter_factory: Callable[..., Adapter], tmp_path: Path) -> None:
    a = adapter_factory(**{"completion.quiet-seconds": 3600}).start()
    study = write_series(tmp_path / "a", 2, rows=64, cols=64)
    assert storescu(a.port, study.files).returncode == 0
    (receiving,) = a.wait_jobs("receiving", 1)
    assert "1 receiving job" in a.cli("complete", study.study_uid).stdout
    (ready,) = a.wait_jobs("ready", 1, timeout=5)
    assert ready["id"] == receiving["id"] and ready["instance_count"] == 2


def test_pending_group_survives_a_restart(adapter_factory: Callable[..., Adapter], tmp_path: Path) -> None:
    a = adapter_factory(**{"completion.quiet-seconds": 3}).start()
    study = write_series(tmp_path / "a", 4, rows=64, cols=64)
    assert storescu(a.port, study.files[:2]).returncode == 0
    assert a.stop() == 0
    (pending,) = [j for j in a.jobs() if j["state"] == "receiving"]
    a.start()
    # Instances sent after the restart, inside the quiet window, join the same job.
    assert storescu(a.port, study.files[2:]).returncode == 0
    (job,) = a.wait_jobs("ready", 1, timeout=15)
    assert job["id"] == pending["id"] and job["instance_count"] == 4
    assert f"job {pending['id']}: joined" in a.log()  # the open group is in the job store


def test_cli_show_retry_and_errors(adapter: Adapter, tmp_path: Path) -> None:
    study = write_series(tmp_path / "a", 1, rows=64, cols=64)
    assert storescu(adapter.port, study.files).returncode == 0
    (job,) = adapter.wait_jobs("ready", 1)
    shown = adapter.job(job["id"])
    assert shown["exports"] == [] and shown["stages"] == [] and shown["state"] == "ready"
    assert job["id"] in adapter.cli("list").stdout
    missing = adapter.cli("show", "no-such-job", check=False)
    assert missing.returncode == 1 and "no such job" in missing.stderr
    not_failed = adapter.cli("retry", job["id"], check=False)
    assert not_failed.returncode == 1 and "only a failed job" in not_failed.stderr
