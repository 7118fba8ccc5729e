"""The jobs list: filters, one row per job, and the feed of changed jobs behind the live updates.

Rows are newest first. A filter is any of: states, called AE title, and free text matched
(case-insensitively) against the job ID, the AE titles, the peer's address, the study UID and
the study's details (patient name and ID, accession number, description, date).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlencode

from appliance.dashboard.details import DetailsCache, StudyDetails
from appliance.jobs import Job, JobState, JobStore
from appliance.storage import PayloadLayout

LOG = logging.getLogger(__name__)

#: Rows shown at most on one page of the list.
PAGE_ROWS = 200


@dataclass(frozen=True)
class Filters:
    """What the list shows: ``states`` (empty: all), called AE title ``ae`` (empty: all), text ``q``."""

    states: tuple[JobState, ...] = ()
    ae: str = ""
    q: str = ""
    limit: int = PAGE_ROWS

    @classmethod
    def parse(cls, params: Mapping[str, str], states: list[str]) -> Filters:
        """From query parameters (``state`` repeated, ``ae``, ``q``, ``limit``); unknown states are ignored."""
        known = {s.value: s for s in JobState}
        try:
            limit = max(1, min(int(params.get("limit", PAGE_ROWS)), 5000))
        except ValueError:
            limit = PAGE_ROWS
        return cls(tuple(known[s] for s in states if s in known), params.get("ae", "").strip(),
                   params.get("q", "").strip(), limit)

    def query(self) -> str:
        """The filters as a query string (for links and the live feed)."""
        pairs = [("state", s.value) for s in self.states]
        pairs += [(k, v) for k, v in (("ae", self.ae), ("q", self.q)) if v]
        return urlencode(pairs)

    def matches(self, job: Job, details: StudyDetails | None) -> bool:
        """Whether ``job`` belongs in the list."""
        if self.states and job.state not in self.states:
            return False
        if self.ae and job.called_ae != self.ae:
            return False
        if self.q:
            needle = self.q.lower()
            text = " ".join((job.id, job.called_ae, job.calling_ae, job.calling_address, job.study_uid,
                             job.workflow, job.state.value)).lower()
            if needle not in text and (details is None or needle not in details.text):
                return False
        return True


@dataclass(frozen=True)
class JobRow:
    """One line of the list: the job, its study's details (None until read) and result count."""

    job: Job
    details: StudyDetails | None
    outputs: int  #: result instances in the job's output folder

    def age(self, now: float) -> str:
        """Time since the job was created, e.g. ``42 s``, ``5 min``, ``3 h``, ``2 d``."""
        return short_duration(now - self.job.created_at)


def short_duration(seconds: float) -> str:
    """``seconds`` in the largest whole unit: s, min, h or d."""
    s = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= size:
            return f"{s // size} {unit}"
    return f"{s} s"


def count_outputs(layout: PayloadLayout, job_id: str) -> int:
    """Non-hidden files in the job's output folder (0 when it has none)."""
    try:
        with os.scandir(layout.output_dir(job_id)) as entries:
            return sum(1 for e in entries if not e.name.startswith(".") and e.is_file())
    except OSError:
        return 0


class JobList:
    """The jobs, newest first, kept in memory and refreshed by :class:`JobFeed`; builds the list's rows.

    The first :meth:`refresh` reads every job; later ones read only what changed, so a request for
    the list never scans the job store.
    """

    def __init__(self, store: JobStore, details: DetailsCache, layout: PayloadLayout) -> None:
        self.store = store
        self.details = details
        self.layout = layout
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._newest_first: list[Job] = []
        self._loaded = False

    def refresh(self, since: float | None = None) -> list[Job]:
        """Read the jobs changed at or after ``since`` (all when None); return those that really changed."""
        fresh = self.store.list_jobs(updated_since=since)
        with self._lock:
            changed = [j for j in fresh if self._jobs.get(j.id) != j]
            if since is None:  # a full read also forgets jobs that are gone
                gone = set(self._jobs) - {j.id for j in fresh}
                for job_id in gone:
                    del self._jobs[job_id]
            else:
                gone = set()
            if changed or gone:
                added = any(j.id not in self._jobs for j in changed)
                self._jobs.update((j.id, j) for j in changed)
                if added or gone:
                    self._newest_first = sorted(self._jobs.values(), key=lambda j: (j.created_at, j.id), reverse=True)
                else:
                    self._newest_first = [self._jobs[j.id] for j in self._newest_first]
            self._loaded = True
        return changed

    def jobs(self) -> list[Job]:
        """Every job, newest first (read from the store at the first call)."""
        if not self._loaded:
            self.refresh()
        return self._newest_first

    def since(self, when: float) -> list[Job]:
        """The jobs changed at or after ``when`` (UNIX s), from memory."""
        return [j for j in self.jobs() if j.updated_at >= when]

    def rows(self, filters: Filters) -> tuple[list[JobRow], int]:
        """The newest ``filters.limit`` matching rows and how many jobs match in all."""
        jobs = self.jobs()
        if filters.states or filters.q or filters.ae:
            jobs = [j for j in jobs if filters.matches(j, self.details.get(j.id))]
        shown = jobs[:filters.limit]
        # Details of the rows shown are read now (once per job); the rest by the feed's thread.
        self.details.fill([j.id for j in shown])
        return [self.row(j) for j in shown], len(jobs)

    def row(self, job: Job) -> JobRow:
        """The row of ``job``."""
        return JobRow(job, self.details.get(job.id), count_outputs(self.layout, job.id))


@dataclass(eq=False)  # hashed by identity: kept in a set
class _Subscriber:
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[list[Job]] = field(default_factory=asyncio.Queue)


class JobFeed:
    """One thread that refreshes the :class:`JobList` from the store every ``poll_seconds`` and hands
    the changed jobs to every subscriber (the live list's event streams). It also reads the
    details of new jobs, and once, at start, of every job (for searching)."""

    #: Rows written this long before a poll may still commit after it: they are looked at again.
    OVERLAP_SECONDS = 2.0
    #: A full read this often forgets jobs deleted from the store.
    FULL_READ_SECONDS = 60.0

    def __init__(self, jobs: JobList, poll_seconds: float = 0.25) -> None:
        self._jobs = jobs
        self._poll = poll_seconds
        self._subscribers: set[_Subscriber] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="job-feed", daemon=True)

    def start(self) -> None:
        """Start polling."""
        self._thread.start()

    def stop(self) -> None:
        """Stop polling."""
        self._stop.set()
        self._thread.join(5)

    def subscribe(self) -> asyncio.Queue[list[Job]]:
        """A queue that receives each batch of changed jobs (call from the event loop)."""
        subscriber = _Subscriber(asyncio.get_running_loop())
        with self._lock:
            self._subscribers.add(subscriber)
        return subscriber.queue

    def unsubscribe(self, queue: asyncio.Queue[list[Job]]) -> None:
        """Stop sending to ``queue``."""
        with self._lock:
            self._subscribers = {s for s in self._subscribers if s.queue is not queue}

    def _run(self) -> None:
        since: float | None = None
        last_full = 0.0
        warm = True
        while not self._stop.wait(self._poll):
            try:
                now = time.time()
                full = since is None or now - last_full > self.FULL_READ_SECONDS
                changed = self._jobs.refresh(None if full else since)
                if full:
                    last_full = now
                since = now - self.OVERLAP_SECONDS
                if warm:  # once: the details of every job, for searching
                    warm = False
                    self._jobs.details.fill([j.id for j in self._jobs.jobs()])
            except Exception:  # noqa: BLE001 - the store is busy or gone; try again next poll
                LOG.debug("job feed: poll failed", exc_info=True)
                continue
            if not changed:
                continue
            self._jobs.details.fill([j.id for j in changed])
            with self._lock:
                subscribers = list(self._subscribers)
            for s in subscribers:
                s.loop.call_soon_threadsafe(s.queue.put_nowait, changed)
