"""The adapter honours the dashboard's controls: intake paused per AE title, a study marked
complete; and it reports its heartbeat and the sender's address. Real adapter, dcmtk peers."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "adapter"))
from adapterkit import Adapter, base_config, echoscu, free_port, storescu, wait_for  # noqa: E402
from ctseries import Series, write_series  # noqa: E402

from appliance.jobs import JobState, JobStore, control  # noqa: E402


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> Series:
    return write_series(tmp_path_factory.mktemp("ct") / "s", 3)


@pytest.fixture
def adapter(tmp_path: Path) -> Adapter:
    a = Adapter(tmp_path, base_config(tmp_path, free_port(), **{"completion.quiet-seconds": 600.0}))
    a.start()
    yield a
    a.kill()


def test_a_paused_ae_title_refuses_associations_until_resumed(adapter: Adapter, series: Series) -> None:
    with JobStore(adapter.root / "jobs.sqlite3") as store:
        control.pause_intake(store.db, "OrganSeg", "olga", "maintenance")
        time.sleep(0.6)  # the adapter reads pauses every tick (at most 0.25 s)
        refused = storescu(adapter.port, series.files, "OrganSeg")
        assert refused.returncode != 0
        assert "Association Rejected" in refused.stderr or "rejected" in refused.stderr.lower(), refused.stderr
        assert echoscu(adapter.port, "LiverSeg").returncode == 0  # other AE titles are open
        assert "intake of OrganSeg is paused" in adapter.log()
        assert store.list_jobs() == []
        control.resume_intake(store.db, "OrganSeg")
        time.sleep(0.6)
        sent = storescu(adapter.port, series.files, "OrganSeg")
        assert sent.returncode == 0, sent.stderr
        (job,) = store.list_jobs()
        assert job.calling_address == "127.0.0.1" and job.calling_ae == "STORESCU"


def test_mark_complete_closes_a_receiving_study_at_once(adapter: Adapter, series: Series) -> None:
    assert storescu(adapter.port, series.files, "OrganSeg").returncode == 0
    with JobStore(adapter.root / "jobs.sqlite3") as store:
        (job,) = store.list_jobs()
        assert job.state is JobState.RECEIVING  # the quiet window is 10 minutes
        store.request_completion(job.study_uid)
        ready = wait_for(lambda: store.get(job.id).state is JobState.READY, 5, "the job ready")
        assert ready


def test_services_report_heartbeats(adapter: Adapter) -> None:
    with JobStore(adapter.root / "jobs.sqlite3") as store:
        beat = wait_for(lambda: next((s for s in control.services(store.db) if s.name == "adapter"), None), 5,
                        "the adapter's heartbeat")
        assert beat.alive(time.time(), control.HEARTBEAT_SECONDS) and beat.status["associations"] == []
        adapter.stop()
        (stopped,) = [s for s in control.services(store.db) if s.name == "adapter"]
        assert stopped.beat_at == 0 and "stopped_at" in stopped.status
