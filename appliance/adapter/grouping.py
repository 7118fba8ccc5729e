"""Grouping received instances into jobs.

Instances are grouped per (called AE title, StudyInstanceUID). The first instance of a group
creates its job (state ``receiving``) and payload folder; later ones land in the same folder.
A group is closed (job ``ready``) once no instance has arrived for ``quiet_seconds`` and none is
being written, or at the next tick after ``appliance jobs complete STUDY_UID``. An instance of
the same study arriving after that opens a *new* group, hence a new job with the next version:
a started job never changes under the pipeline's feet.

Open groups live in memory and in the job store; :meth:`Grouper.recover` rebuilds them after a
restart from the store and the files on disk, and their quiet window starts again.
"""

from __future__ import annotations

import logging
import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from appliance.jobs import Job, JobState, JobStore
from appliance.settings import AeTitleConfig
from appliance.storage import PayloadLayout, make_dirs, remove_temporaries

LOG = logging.getLogger(__name__)

#: Suffix of stored instances in a job's input folder.
INSTANCE_SUFFIX = ".dcm"


def new_job_id(called_ae: str, now: float | None = None) -> str:
    """A fresh job ID (and folder name): ``<AE>-<UTC yyyymmddThhmmss>-<8 hex>``."""
    stamp = datetime.fromtimestamp(now if now is not None else time.time(), tz=timezone.utc)
    ae = re.sub(r"[^A-Za-z0-9]+", "_", called_ae).strip("_") or "AE"
    return f"{ae}-{stamp:%Y%m%dT%H%M%S}-{secrets.token_hex(4)}"


@dataclass
class _Group:
    job_id: str
    called_ae: str
    study_uid: str
    input_dir: Path
    last_seen: float  # clock() of the last arrival, seconds
    last_seen_wall: float  # time.time() of the same, for the store
    sops: set[str] = field(default_factory=set)
    inflight: int = 0
    dirty: bool = False
    complete_requested: bool = False


class Slot:
    """Handed to the C-STORE handler while it writes one instance into a group's folder."""

    def __init__(self, group: _Group) -> None:
        self._group = group
        self.stored_sop: str | None = None

    @property
    def job_id(self) -> str:
        """The job the instance belongs to."""
        return self._group.job_id

    @property
    def input_dir(self) -> Path:
        """Where to write it."""
        return self._group.input_dir

    def stored(self, sop_uid: str) -> None:
        """Report that ``sop_uid`` is durably in :attr:`input_dir`."""
        self.stored_sop = sop_uid


class Grouper:
    """Keeps the open groups; thread-safe (C-STORE handlers run on one thread per association).

    ``bindings`` maps a called AE title to its configuration (workflow, destinations);
    ``quiet_seconds`` is the completion window; ``clock`` is monotonic seconds (for tests).
    """

    def __init__(
        self,
        store: JobStore,
        layout: PayloadLayout,
        bindings: Callable[[str], AeTitleConfig | None],
        quiet_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._layout = layout
        self._bindings = bindings
        self._quiet = quiet_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._groups: dict[tuple[str, str], _Group] = {}
        self._unclosed: list[_Group] = []  # closes that failed (store error); retried each tick

    def open_groups(self) -> int:
        """How many groups are receiving."""
        with self._lock:
            return len(self._groups)

    def reserve(self, called_ae: str, calling_ae: str, study_uid: str, calling_address: str = "") -> Slot:
        """Reserve the open group of (``called_ae``, ``study_uid``), creating job and folder if needed
        (``calling_address``, the peer's IP address, is recorded on a new job).

        The group cannot close until the slot is given to :meth:`release`. Raises
        OSError/sqlite3.Error if the job cannot be created.
        """
        key = (called_ae, study_uid)
        with self._lock:
            group = self._groups.get(key)
            if group is None:
                # Creating under the lock: concurrent first instances of one study must not
                # make two jobs. It happens once per study, so the wait is short and rare.
                group = self._create(called_ae, calling_ae, study_uid, calling_address)
                self._groups[key] = group
            group.inflight += 1
        return Slot(group)

    def release(self, slot: Slot) -> None:
        """End a reservation; the instance counts if :meth:`Slot.stored` was called."""
        group = slot._group
        with self._lock:
            group.inflight -= 1
            group.last_seen = self._clock()
            if slot.stored_sop is not None:
                group.last_seen_wall = time.time()
                group.sops.add(slot.stored_sop)
                group.dirty = True

    @contextmanager
    def receiving(self, called_ae: str, calling_ae: str, study_uid: str) -> Iterator[Slot]:
        """:meth:`reserve` for the duration of a ``with`` block."""
        slot = self.reserve(called_ae, calling_ae, study_uid)
        try:
            yield slot
        finally:
            self.release(slot)

    def _create(self, called_ae: str, calling_ae: str, study_uid: str, calling_address: str) -> _Group:
        binding = self._bindings(called_ae)
        workflow = binding.workflow if binding else called_ae
        destinations = binding.destinations if binding else ()
        job_id = new_job_id(called_ae)
        # Row first, then folder: a folder never exists without its job. A row whose folder
        # is missing (crash in between) has no instances and is dropped by recover().
        self._store.create(job_id, called_ae=called_ae, calling_ae=calling_ae, study_uid=study_uid,
                           workflow=workflow, destinations=destinations, calling_address=calling_address)
        input_dir = self._layout.input_dir(job_id)
        try:
            make_dirs(input_dir)
        except OSError:
            self._store.delete(job_id)
            raise
        LOG.info("job %s: receiving study %s on %s from %s@%s", job_id, study_uid, called_ae, calling_ae,
                 calling_address or "?")
        now = self._clock()
        return _Group(job_id, called_ae, study_uid, input_dir, now, time.time())

    def request_completion(self, study_uid: str) -> int:
        """Close the study's groups at the next tick (when no write is in progress)."""
        with self._lock:
            groups = [g for g in self._groups.values() if g.study_uid == study_uid]
            for g in groups:
                g.complete_requested = True
        return len(groups)

    def tick(self) -> list[Job]:
        """Close due groups and save progress of the others; return the jobs that became ready."""
        for study_uid in self._store.take_completion_requests():
            if not self.request_completion(study_uid):
                LOG.info("completion requested for study %s, which has no open group", study_uid)
        now = self._clock()
        with self._lock:
            due = [
                g for g in self._groups.values()
                if g.inflight == 0 and (g.complete_requested or now - g.last_seen >= self._quiet)
            ]
            for g in due:
                del self._groups[(g.called_ae, g.study_uid)]
            progress = [(g.job_id, len(g.sops), g.last_seen_wall) for g in self._groups.values() if g.dirty]
            for g in self._groups.values():
                g.dirty = False
            due.extend(self._unclosed)
            self._unclosed = []
        for job_id, count, last in progress:
            try:
                self._store.update_progress(job_id, count, last)
            except Exception:  # progress is informational; the close below is what matters
                LOG.exception("job %s: could not save progress", job_id)
        ready: list[Job] = []
        for g in due:
            try:
                ready.extend(self._close(g))
            except Exception:
                LOG.exception("job %s: could not close; will retry", g.job_id)
                with self._lock:
                    self._unclosed.append(g)
        return ready

    def _close(self, group: _Group) -> list[Job]:
        if not group.sops:
            # Every store into it failed (e.g. disk full): nothing was acknowledged, no job.
            self._discard(group.job_id)
            return []
        self._store.update_progress(group.job_id, len(group.sops), group.last_seen_wall)
        job = self._store.mark_ready(group.job_id, len(group.sops))
        LOG.info("job %s: ready, %d instance(s) of study %s", job.id, job.instance_count, job.study_uid)
        return [job]

    def _discard(self, job_id: str) -> None:
        self._store.delete(job_id)
        shutil.rmtree(self._layout.job_dir(job_id), ignore_errors=True)
        LOG.info("job %s: discarded (no instance stored)", job_id)

    def recover(self) -> int:
        """Rebuild open groups from ``receiving`` jobs after a restart; return how many."""
        jobs = self._store.list_jobs([JobState.RECEIVING])
        now = self._clock()
        for job in jobs:
            input_dir = self._layout.input_dir(job.id)
            removed = remove_temporaries(input_dir)
            sops = (
                {p.name[: -len(INSTANCE_SUFFIX)] for p in input_dir.iterdir()
                 if p.name.endswith(INSTANCE_SUFFIX) and not p.name.startswith(".")}
                if input_dir.is_dir() else set()
            )
            if removed:
                LOG.warning("job %s: removed %d half-written file(s) left by a crash", job.id, removed)
            group = _Group(job.id, job.called_ae, job.study_uid, input_dir, now, time.time(), sops,
                           dirty=True)
            if not sops:
                self._discard(job.id)
                continue
            key = (job.called_ae, job.study_uid)
            older = self._groups.get(key)
            if older is not None:  # cannot normally happen; never merge two jobs
                self._close(older)
            self._groups[key] = group
            LOG.info("job %s: resumed receiving, %d instance(s) on disk", job.id, len(sops))
        return len(self._groups)
