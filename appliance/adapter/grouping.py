"""Grouping received instances into jobs.

Instances are grouped per (called AE title, StudyInstanceUID). The first instance of a group
creates its job (state ``receiving``) and payload folder; later ones land in the same folder.
A group is closed (job ``ready``) once no instance has arrived for ``quiet_seconds`` and none is
being written, or at the next tick after ``appliance jobs complete STUDY_UID``. An instance of
the same study arriving after that opens a *new* group, hence a new job with the next version:
a started job never changes under the pipeline's feet.

Open groups live in memory and in the job store; :meth:`Grouper.recover` rebuilds them after a
restart from the store and the files on disk, and their quiet window starts again.

Each SOP Instance UID is stored once per group: :meth:`Slot.claim` admits the first instance with
it to the folder, and the receiver applies the duplicate policy to any later one (never a
replacement of what was acknowledged, also when two arrive at once).

The job store may fail (disk full, locked by another process past its busy timeout, I/O
errors). :meth:`Grouper.tick` then logs it once, gives up for that tick and tries again at the
next; :meth:`Grouper.reserve` raises, which the receiver answers with 0xA700. Nothing here
raises out of a tick, so a store fault never ends the process.
"""

from __future__ import annotations

import logging
import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from appliance.jobs import Intake, Job, StoreError
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
    sops: set[str] = field(default_factory=set)  # stored
    claimed: set[str] = field(default_factory=set)  # being committed
    inflight: int = 0
    dirty: bool = False
    complete_requested: bool = False


@dataclass
class _Creation:
    """A group's job being created; waiters share its outcome."""

    done: threading.Event = field(default_factory=threading.Event)
    error: OSError | StoreError | None = None


class Slot:
    """Handed to the C-STORE handler while it writes one instance into a group's folder."""

    def __init__(self, group: _Group, lock: threading.Lock) -> None:
        self._group = group
        self._lock = lock
        self.claimed_sop: str | None = None
        self.stored_sop: str | None = None

    @property
    def job_id(self) -> str:
        """The job the instance belongs to."""
        return self._group.job_id

    @property
    def input_dir(self) -> Path:
        """Where to write it."""
        return self._group.input_dir

    def claim(self, sop_uid: str) -> bool:
        """Take ``sop_uid``'s place in the folder before committing it; False if an instance with
        it is already stored or being committed in this group (a duplicate)."""
        with self._lock:
            group = self._group
            if sop_uid in group.sops or sop_uid in group.claimed:
                return False
            group.claimed.add(sop_uid)
        self.claimed_sop = sop_uid
        return True

    def stored(self, sop_uid: str) -> None:
        """Report that ``sop_uid`` (claimed) is durably in :attr:`input_dir`."""
        self.stored_sop = sop_uid


class Grouper:
    """Keeps the open groups; thread-safe (C-STORE handlers run on one thread per association).

    ``store`` is the job store, or a function that opens it: then it is opened at first use and
    again after a failed open, so a store that cannot be opened at start (locked, disk full) is
    a fault like any other, not the end of the process. ``bindings`` maps a called AE title to
    its configuration (workflow, destinations); ``quiet_seconds`` is the completion window;
    ``clock`` is monotonic seconds (for tests).
    """

    def __init__(
        self,
        store: Intake | Callable[[], Intake],
        layout: PayloadLayout,
        bindings: Callable[[str], AeTitleConfig | None],
        quiet_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._opened = store if isinstance(store, Intake) else None
        self._open = store if not isinstance(store, Intake) else None
        self._open_lock = threading.Lock()
        self._layout = layout
        self._bindings = bindings
        self._quiet = quiet_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._groups: dict[tuple[str, str], _Group] = {}
        self._creating: dict[tuple[str, str], _Creation] = {}
        self._unclosed: list[_Group] = []  # closes that failed (store error); retried each tick
        self._recovered = False
        self._recover_lock = threading.Lock()
        self._trouble: str | None = None  # the store error being reported, while it lasts

    @property
    def _store(self) -> Intake:
        """The job store, opened on first use; raises a store error while it cannot be opened."""
        if self._opened is None:
            with self._open_lock:
                if self._opened is None:
                    assert self._open is not None
                    self._opened = self._open()
        return self._opened

    def close(self) -> None:
        """Close the job store's connection if this grouper opened it (a given one is the caller's)."""
        if self._open is not None and self._opened is not None:
            self._opened.db.close()

    def open_groups(self) -> int:
        """How many groups are receiving."""
        with self._lock:
            return len(self._groups)

    def reserve(self, called_ae: str, calling_ae: str, study_uid: str, calling_address: str = "") -> Slot:
        """Reserve the open group of (``called_ae``, ``study_uid``), creating job and folder if needed
        (``calling_address``, the peer's IP address, is recorded on a new job).

        The group cannot close until the slot is given to :meth:`release`. Raises
        OSError/StoreError if the job cannot be created.
        """
        key = (called_ae, study_uid)
        if not self._recovered:
            self.recover()  # raises while the store is unavailable: nothing is stored before it
        while True:
            with self._lock:
                group = self._groups.get(key)
                if group is not None:
                    group.inflight += 1
                    return Slot(group, self._lock)
                creation = self._creating.get(key)
                mine = creation is None
                if creation is None:
                    creation = self._creating[key] = _Creation()
            if mine:
                break
            # Another instance of the study is creating its job: wait for it, share its outcome
            # (concurrent first instances of one study must not make two jobs).
            creation.done.wait()
            if creation.error is not None:
                raise creation.error
        # The store is written without the lock held: a slow or locked store delays only the
        # instances of this new study, never those of studies already receiving.
        try:
            group = self._create(called_ae, calling_ae, study_uid, calling_address)
        except (OSError, StoreError) as exc:
            creation.error = exc
            raise
        else:
            with self._lock:
                self._groups[key] = group
                group.inflight += 1
            return Slot(group, self._lock)
        finally:
            with self._lock:
                del self._creating[key]
            creation.done.set()

    def release(self, slot: Slot) -> None:
        """End a reservation; the instance counts if :meth:`Slot.stored` was called."""
        group = slot._group
        with self._lock:
            group.inflight -= 1
            group.last_seen = self._clock()
            if slot.claimed_sop is not None:
                group.claimed.discard(slot.claimed_sop)
            if slot.stored_sop is not None:
                group.last_seen_wall = time.time()
                group.sops.add(slot.stored_sop)
                group.dirty = True

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
        """Close due groups and save progress of the others; return the jobs that became ready.

        Never raises for a store error: it is logged (once while it lasts) and the rest of the
        tick's store work waits for the next tick.
        """
        try:
            if not self._recovered:
                self.recover()
            for study_uid in self._store.take_completion_requests():
                if not self.request_completion(study_uid):
                    LOG.info("completion requested for study %s, which has no open group", study_uid)
        except (StoreError, OSError) as exc:
            self._store_failed(exc)
            return []
        now = self._clock()
        with self._lock:
            due = [
                g for g in self._groups.values()
                if g.inflight == 0 and (g.complete_requested or now - g.last_seen >= self._quiet)
            ]
            for g in due:
                del self._groups[(g.called_ae, g.study_uid)]
            progress = [g for g in self._groups.values() if g.dirty]
            for g in progress:
                g.dirty = False
            due.extend(self._unclosed)
            self._unclosed = []
        ready: list[Job] = []
        try:
            for g in progress:
                self._store.update_progress(g.job_id, len(g.sops), g.last_seen_wall)
                progress = progress[1:]
            while due:
                ready.extend(self._close(due[0]))
                due = due[1:]
        except (StoreError, OSError) as exc:
            self._store_failed(exc)
            with self._lock:
                for g in progress:
                    g.dirty = True
                self._unclosed.extend(due)
            return ready
        if self._trouble is not None:
            LOG.warning("job store available again (it failed with: %s)", self._trouble)
            self._trouble = None
        return ready

    def _store_failed(self, exc: Exception) -> None:
        if self._trouble is None:
            LOG.error("job store unavailable: %s; receiving answers 0xA700 for new studies, "
                      "open studies are closed once it is back (retried every tick)", exc)
            self._trouble = str(exc)

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
        """Rebuild open groups from ``receiving`` jobs after a restart; return how many (0 when
        already done).

        Raises a store or file-system error, having changed nothing in memory; the next
        :meth:`tick` or :meth:`reserve` tries again. Runs once, before any job is created: a
        recovery that ran beside a creation would take the new, still empty job for one a crash
        left behind and delete it.
        """
        with self._recover_lock:
            if self._recovered:
                return 0
            jobs = self._store.receiving()
            now = self._clock()
            resumed: dict[tuple[str, str], _Group] = {}
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
                if not sops:
                    self._discard(job.id)
                    continue
                key = (job.called_ae, job.study_uid)
                older = resumed.get(key)
                if older is not None:  # cannot normally happen; never merge two jobs
                    self._close(older)
                resumed[key] = _Group(job.id, job.called_ae, job.study_uid, input_dir, now, time.time(), sops,
                                      dirty=True)
            with self._lock:
                self._groups.update(resumed)
                self._recovered = True
        for group in resumed.values():
            LOG.info("job %s: resumed receiving, %d instance(s) on disk", group.job_id, len(group.sops))
        return len(resumed)
