"""Retention on both backends: age and watermark prunes, what is never pruned, crash-safe order, audit."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest

from appliance.jobs import (
    Database,
    ExportQueue,
    Intake,
    InvalidTransition,
    JobState,
    JobStore,
    PipelineQueue,
    Pruner,
    RetentionPolicy,
    operator,
)
from appliance.jobs.retention import freed, prunes
from appliance.storage import PayloadLayout

from .test_exports import _exporting, _record
from .test_store import new_job

DAY = 86400.0


@pytest.fixture
def layout(tmp_path: Path) -> PayloadLayout:
    (tmp_path / "root").mkdir()
    return PayloadLayout(tmp_path / "root")


def _folder(layout: PayloadLayout, job_id: str, size: int = 8192) -> None:
    layout.input_dir(job_id).mkdir(parents=True)
    (layout.input_dir(job_id) / "1.dcm").write_bytes(b"\0" * size)


def _age(store: JobStore, job_id: str, days: float) -> None:
    with store.db.transaction() as tx:
        tx.execute("UPDATE jobs SET finished_at = ? WHERE id = ?", (time.time() - days * DAY, job_id))


def _send(store: JobStore, job_id: str, destination: str, state: str = "sent") -> None:
    queue = ExportQueue(store.db, "e", 30)
    task = queue.claim(destination, 5)
    assert task is not None and task.job_id == job_id
    queue.finish(task, state, _record(task, state))


def _delivered(store: JobStore, layout: PayloadLayout, job_id: str, days: float) -> None:
    """A ``done`` job whose results reached its one destination, finished ``days`` ago, with a folder."""
    _exporting(store, job_id, ("A",))
    _send(store, job_id, "A")
    assert store.get(job_id).state is JobState.DONE
    _folder(layout, job_id)
    _age(store, job_id, days)


@pytest.fixture
def jobs(store: JobStore, layout: PayloadLayout) -> Iterator[JobStore]:
    """Old jobs in every state: D1/D2 delivered (10 and 20 days), P1 exporting with one destination
    undelivered, F1 failed at export, R1 running, Q1 ready, V1 receiving; every one has a folder."""
    _delivered(store, layout, "D1", 10)
    _delivered(store, layout, "D2", 20)
    _exporting(store, "P1", ("A", "B"))
    _send(store, "P1", "A")
    _exporting(store, "F1", ("A",))
    _send(store, "F1", "A", "failed")
    _age(store, "F1", 30)
    intake = Intake(store.db)
    for job_id in ("R1", "Q1", "V1"):
        new_job(intake, job_id, study=f"9.{job_id}", destinations=("A",))
    intake.mark_ready("R1", 1)
    intake.mark_ready("Q1", 1)
    assert PipelineQueue(store.db, "w", 30).claim() is not None  # R1, the oldest ready
    with store.db.transaction() as tx:  # every job looks 30 days old
        tx.execute("UPDATE jobs SET created_at = created_at - ?, updated_at = updated_at - ?", (30 * DAY, 30 * DAY))
    for job_id in ("P1", "F1", "R1", "Q1", "V1"):
        _folder(layout, job_id)
    yield store


def _left(layout: PayloadLayout) -> list[str]:
    return sorted(p.name for p in layout.root.iterdir())


def test_age_prunes_only_delivered_jobs_and_audits_them(jobs: JobStore, layout: PayloadLayout) -> None:
    pruned = Pruner(jobs.db, layout, RetentionPolicy(max_age_days=15)).run()
    assert [(p.job_id, p.reason) for p in pruned] == [("D2", "age")]
    assert pruned[0].bytes_freed is not None and pruned[0].bytes_freed >= 8192 and pruned[0].finished_at
    assert _left(layout) == ["D1", "F1", "P1", "Q1", "R1", "V1"]
    pruned = Pruner(jobs.db, layout, RetentionPolicy(max_age_days=0.5)).run()
    assert [p.job_id for p in pruned] == ["D1"]
    assert _left(layout) == ["F1", "P1", "Q1", "R1", "V1"]  # undelivered, failed, running, ready, receiving
    assert [(p.job_id, p.reason) for p in prunes(jobs.db)] == [("D1", "age"), ("D2", "age")]
    assert freed(jobs.db).jobs == 2 and freed(jobs.db).bytes >= 2 * 8192
    assert jobs.stages("D1") == [] and jobs.export_tasks("D1") == [] and jobs.exports("D1") == []
    assert jobs.get("D1").state is JobState.DONE  # the row stays, for the audit and version numbers


def test_failed_jobs_are_kept_until_their_own_age(jobs: JobStore, layout: PayloadLayout) -> None:
    assert [p.job_id for p in Pruner(jobs.db, layout, RetentionPolicy(max_age_days=0.001)).run()] == ["D2", "D1"]
    assert "F1" in _left(layout)
    pruned = Pruner(jobs.db, layout, RetentionPolicy(failed_max_age_days=25)).run()
    assert [(p.job_id, p.reason) for p in pruned] == [("F1", "failed-age")]
    with pytest.raises(InvalidTransition, match="retention"):
        jobs.retry("F1")  # its files are gone: a retry would act on a missing folder
    # The operator's actions (the dashboard's) refuse it the same way.
    for act in (lambda: operator.rerun(jobs, "D1"), lambda: operator.export_again(jobs, "D1", ["pacs"])):
        with pytest.raises(InvalidTransition, match="retention"):
            act()


def test_watermark_prunes_oldest_delivered_jobs_until_below(jobs: JobStore, layout: PayloadLayout) -> None:
    def usage(root: Path) -> SimpleNamespace:  # a disk of 100 blocks of 8 KiB holding only the root's files
        used = sum(f.stat().st_blocks * 512 for f in root.rglob("*") if f.is_file())
        return SimpleNamespace(total=100 * 8192, used=used + 87 * 8192)

    policy = RetentionPolicy(disk_watermark_percent=93.5)  # 7 folders + 87 = 94 % used: one must go
    pruned = Pruner(jobs.db, layout, policy, disk_usage=usage).run()
    assert [(p.job_id, p.reason) for p in pruned] == [("D2", "watermark")]
    policy = RetentionPolicy(disk_watermark_percent=50)  # unreachable: only delivered jobs are removed
    assert [p.job_id for p in Pruner(jobs.db, layout, policy, disk_usage=usage).run()] == ["D1"]
    assert _left(layout) == ["F1", "P1", "Q1", "R1", "V1"]


def test_a_job_is_pruned_only_in_a_prunable_state(jobs: JobStore, layout: PayloadLayout) -> None:
    pruner = Pruner(jobs.db, layout, RetentionPolicy(max_age_days=0))
    for job_id in ("P1", "R1", "Q1", "V1", "F1"):
        assert pruner.prune(job_id, "age", "test") is None
    assert _left(layout) == ["D1", "D2", "F1", "P1", "Q1", "R1", "V1"]
    assert freed(jobs.db).jobs == 0


class _KilledMidRemoval(PayloadLayout):
    def remove_job(self, job_id: str) -> int:  # killed after the rename, before the delete
        self.job_dir(job_id).rename(self.removing_dir(job_id))
        raise SystemExit("killed")


def test_a_crash_mid_prune_leaves_no_actionable_row_and_is_finished_later(
        jobs: JobStore, layout: PayloadLayout) -> None:
    policy = RetentionPolicy(max_age_days=15)
    with pytest.raises(SystemExit):
        Pruner(jobs.db, _KilledMidRemoval(layout.root), policy).run()
    pruner = Pruner(jobs.db, layout, policy, stale_seconds=0)
    # Marked pruned before its folder went: finished, not actionable, and retry refuses it.
    assert jobs.get("D2").state is JobState.DONE
    assert [(p.job_id, p.finished_at) for p in prunes(jobs.db)] == [("D2", None)]
    assert _left(layout) == [".removing-D2", "D1", "F1", "P1", "Q1", "R1", "V1"]
    (done,) = pruner.resume()
    assert done.job_id == "D2" and done.finished_at is not None and done.bytes_freed
    assert _left(layout) == ["D1", "F1", "P1", "Q1", "R1", "V1"]
    assert pruner.run() == []  # nothing twice


def test_two_pruners_at_once_remove_each_job_once(store: JobStore, layout: PayloadLayout,
                                                   connect: Callable[[], Database]) -> None:
    for n in range(8):
        _delivered(store, layout, f"D{n}", 10 + n)
    pruners = [Pruner(connect(), layout, RetentionPolicy(max_age_days=1)) for _ in range(2)]
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda p: p.run(), pruners))
    assert sorted(p.job_id for r in results for p in r) == [f"D{n}" for n in range(8)]
    assert _left(layout) == [] and freed(store.db).jobs == 8
