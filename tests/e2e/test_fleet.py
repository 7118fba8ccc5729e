"""A fleet on one PostgreSQL job store and one spool: 2 adapters, 4 workers and 2 exporters as separate
processes, 20 studies sent with dcmtk ``storescu``, each split over both adapters at once, and 20
``kill -9`` of random processes (each restarted) while they work. Then: each study is one job (its
open group is in the job store, shared by the adapters), every acknowledged instance is in exactly
one job (also those sent again after a kill), every job is done once, no SEG reached the PACS twice,
no job is left behind.
"""

from __future__ import annotations

import random
import re
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from appliance.jobs import JobState
from appliance.phantom import PhantomFiles, PhantomSpec, write_phantom
from appliance.triton_local import LocalTriton
from harness.peers import nodelay_env
from harness.postgres import PostgresServer

from .e2ekit import Fleet, system_tool, wait_for

STUDIES = 20
KILLS = 20


@pytest.fixture(scope="module")
def small_studies(tmp_path_factory: pytest.TempPathFactory) -> list[PhantomFiles]:
    """Twenty 64 x 64 x 24 phantom studies (the workflows want 20 slices or more), each with its own UIDs."""
    if system_tool("storescp") is None:
        pytest.skip("dcmtk not installed (apt-get install dcmtk)")
    folder = tmp_path_factory.mktemp("studies")
    return [write_phantom(folder / f"s{n}", PhantomSpec(size=64, slices=24, seed=100 + n)) for n in range(STUDIES)]


@pytest.fixture
def counting_pacs(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """dcmtk storescp keeping every reception as a file of its own (a second copy would show)."""
    from .e2ekit import free_port

    folder, port = tmp_path / "pacs", free_port()
    folder.mkdir()
    proc = subprocess.Popen([str(system_tool("storescp")), "-aet", "PACS", "-od", str(folder), "-uf", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=nodelay_env())
    yield port, folder
    proc.kill()
    proc.wait(10)


def _send(port: int, files: tuple[Path, ...]) -> set[Path]:
    """storescu the files; return those the adapter acknowledged (it may be killed meanwhile)."""
    done = subprocess.run([str(system_tool("storescu")), "-v", "-aet", "STORESCU", "-aec", "OrganSeg", "127.0.0.1",
                           str(port), *map(str, files)], capture_output=True, text=True, timeout=120,
                          env=nodelay_env())
    acknowledged, current = set(), None
    for line in (done.stdout + done.stderr).splitlines():
        sending = re.search(r"Sending file: (.+)$", line)
        if sending:
            current = Path(sending.group(1).strip())
        elif "Received Store Response (Success" in line and current is not None:
            acknowledged.add(current)
    return acknowledged


def test_fleet_survives_random_kills(tmp_path: Path, postgres: PostgresServer, triton: LocalTriton,
                                     small_studies: list[PhantomFiles],
                                     counting_pacs: tuple[int, Path]) -> None:
    pacs_port, received = counting_pacs
    fleet = Fleet(tmp_path / "fleet", postgres.create_database(), triton.ports, pacs_port, max_resumes=10)
    rng = random.Random(15)
    started = time.monotonic()
    try:
        fleet.start()
        sent: dict[Path, int] = {}  # acknowledged instance -> times it was sent
        sending_done = threading.Event()

        def send_half(study: PhantomFiles, half: int) -> None:
            # Half the study to each adapter, at once: both write into the study's one open group.
            # What a killed adapter did not acknowledge is sent again, to the other adapter.
            files = study.files[half::2]
            for attempt in range(200):
                pending = tuple(f for f in files if f not in sent)
                if not pending:
                    return
                for path in _send(fleet.adapters[(half + attempt) % 2].port, pending):
                    sent[path] = 2 if attempt else 1
                time.sleep(0.2)

        def send_all() -> None:
            for study in small_studies:
                halves = [threading.Thread(target=send_half, args=(study, half)) for half in (0, 1)]
                for thread in halves:
                    thread.start()
                for thread in halves:
                    thread.join()
            sending_done.set()

        sender = threading.Thread(target=send_all, daemon=True)
        sender.start()
        kills: Counter[str] = Counter()
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.5, 2.5))
            victim = rng.choice(fleet.processes)
            victim.kill()
            kills[victim.command] += 1
            victim.start()
        sender.join(300)
        assert sending_done.is_set(), "storescu did not finish"
        print(f"kills: {dict(kills)}; sending done after {time.monotonic() - started:.0f} s")

        def settled() -> list[object] | None:
            jobs = fleet.jobs()
            busy = [j for j in jobs if j.state not in (JobState.DONE, JobState.FAILED)]
            return None if busy or not jobs else list(jobs)

        try:
            wait_for(settled, 300, "every job done or failed", interval=0.5)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{fleet.jobs()}{fleet.logs()}") from None
        jobs = fleet.jobs()
        print(f"{len(jobs)} jobs settled after {time.monotonic() - started:.0f} s")
        failed = [(j.id, j.state.value, j.instance_count, j.error) for j in jobs if j.state is not JobState.DONE]
        assert not failed, f"{failed}{fleet.logs()}"

        # Each study is one job, over both adapters; every acknowledged instance is in exactly one
        # job, also when it was sent again after a kill.
        per_study = Counter(j.study_uid for j in jobs)
        assert [uid for uid, n in per_study.items() if n > 1] == [], [(j.id, j.study_uid) for j in jobs]
        holders: dict[str, list[str]] = {}
        for job in jobs:
            for path in (fleet.spool / job.id / "input").glob("*.dcm"):
                holders.setdefault(path.stem, []).append(job.id)
        resent = sum(1 for times in sent.values() if times > 1)
        print(f"{len(sent)} instances acknowledged, {resent} of them after a resend")
        for path in sent:
            sop = str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
            assert holders.get(sop, []) != [], f"acknowledged {sop} is in no job"
            assert len(holders[sop]) == 1, (sop, holders[sop])
        # Each job exported once: its SEG reached the PACS exactly once, and nothing else did.
        seen = Counter(str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in received.iterdir())
        assert [uid for uid, n in seen.items() if n > 1] == []
        segs = {str(pydicom.dcmread(fleet.spool / j.id / "output" / "seg.dcm", stop_before_pixels=True).SOPInstanceUID)
                for j in jobs}
        assert set(seen) == segs
        assert {j.study_uid for j in jobs} == {s.study_uid for s in small_studies}
    finally:
        fleet.kill()
