"""Grouping received instances into jobs.

Instances are grouped per (called AE title, StudyInstanceUID). The first instance of a group
creates its job (state ``receiving``) and payload folder; later ones land in the same folder.
A group is closed (job ``ready``) once no instance has arrived for ``quiet_seconds`` and none is
being written, or at the next tick after ``appliance jobs complete STUDY_UID``. An instance of
the same study arriving after that opens a *new* group, hence a new job with the next version:
a started job never changes under the pipeline's feet.

Open groups live in the job store, shared by every adapter on it (a fleet behind one address):
an adapter's first instance of a study joins the study's open group or creates it atomically
(:meth:`Intake.join`), so a study received over several adapters is one job. Each adapter records
its activity in the group (every tick while it writes or stored something, and at once before
the first instance after half a quiet window), and the quiet window is measured from the group's
last instance across all adapters, on the database's clock. Closing is a conditional delete of
the group row (:meth:`Intake.close`): exactly one adapter closes it. An adapter also closes quiet
groups it does not know (left by a killed adapter, or its own before a restart), counting what is
in their folders; memory only caches the groups this adapter is writing into.

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
    touched: float  # clock() when the store last confirmed the group open (joined or touched)
    sops: set[str] = field(default_factory=set)  # stored
    claimed: set[str] = field(default_factory=set)  # being committed
    inflight: int = 0
    added: int = 0  # stored since the last touch
    complete_requested: bool = False

    @property
    def dirty(self) -> bool:
        return self.added > 0 or self.inflight > 0


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
            if (group.input_dir / (sop_uid + INSTANCE_SUFFIX)).exists():  # stored by another adapter
                group.sops.add(sop_uid)
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
        self._completing: set[str] = set()  # studies whose completion was requested
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
                # A group idle here for half the quiet window is confirmed in the store first: another
                # adapter may have closed it meanwhile.
                if group is not None and self._clock() - group.touched < self._quiet / 2:
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
                known = self._groups.get(key)
                if known is not None and known.job_id == group.job_id:
                    known.touched = group.touched
                    group = known
                else:
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
                group.sops.add(slot.stored_sop)
                group.added += 1

    def _create(self, called_ae: str, calling_ae: str, study_uid: str, calling_address: str) -> _Group:
        """Join the study's open group in the store, or create it with a new job and folder."""
        binding = self._bindings(called_ae)
        workflow = binding.workflow if binding else called_ae
        destinations = binding.destinations if binding else ()
        job, created = self._store.join(new_job_id(called_ae), called_ae=called_ae, calling_ae=calling_ae,
                                        study_uid=study_uid, workflow=workflow, destinations=destinations,
                                        calling_address=calling_address)
        # Row first, then folder (the store's group keeps it open meanwhile); a joining adapter
        # makes it too, as its creator may not have yet. A group whose folder stays empty is
        # deleted with its job when it closes.
        input_dir = self._layout.input_dir(job.id)
        make_dirs(input_dir)
        if created:
            LOG.info("job %s: receiving study %s on %s from %s@%s", job.id, study_uid, called_ae, calling_ae,
                     calling_address or "?")
        else:
            LOG.info("job %s: joined, receiving study %s on %s from %s", job.id, study_uid, called_ae, calling_ae)
        now = self._clock()
        return _Group(job.id, called_ae, study_uid, input_dir, now, now)

    def request_completion(self, study_uid: str) -> int:
        """Close the study's groups at the next tick (when no write of this adapter is in progress)."""
        with self._lock:
            groups = [g for g in self._groups.values() if g.study_uid == study_uid]
            for g in groups:
                g.complete_requested = True
            self._completing.add(study_uid)
        return len(groups)

    def tick(self) -> list[Job]:
        """Record this adapter's activity in its groups, close quiet groups (any adapter's) and
        requested ones; return the jobs that became ready.

        Never raises for a store error: it is logged (once while it lasts) and the rest of the
        tick's store work waits for the next tick.
        """
        ready: list[Job] = []
        with self._lock:
            touching = [(g, g.added) for g in self._groups.values() if g.dirty]
            for g, _ in touching:
                g.added = 0
        try:
            if not self._recovered:
                self.recover()
            for study_uid in self._store.take_completion_requests():
                if not self.request_completion(study_uid):
                    LOG.info("completion requested for study %s, which has no open group here", study_uid)
            while touching:
                group, added = touching[0]
                started = self._clock()
                if self._store.touch(group.job_id, added):
                    group.touched = started
                else:
                    self._forget(group, "closed by another adapter")
                touching = touching[1:]
            ready.extend(self._complete_requested())
            now = self._clock()
            with self._lock:
                due = [g for g in self._groups.values()
                       if g.inflight == 0 and g.added == 0 and now - g.last_seen >= self._quiet]
            for g in due:  # closed below once quiet in the store, by this adapter or another
                self._forget(g, None)
            for job in self._store.quiet_groups(self._quiet):
                ready.extend(self._close(job, self._quiet))
        except (StoreError, OSError) as exc:
            self._store_failed(exc)
            with self._lock:
                for group, added in touching:
                    group.added += added
            return ready
        if self._trouble is not None:
            LOG.warning("job store available again (it failed with: %s)", self._trouble)
            self._trouble = None
        return ready

    def _forget(self, group: _Group, why: str | None) -> None:
        with self._lock:
            key = (group.called_ae, group.study_uid)
            if self._groups.get(key) is group:
                del self._groups[key]
        if why is not None:
            LOG.warning("job %s: %s", group.job_id, why)

    def _complete_requested(self) -> list[Job]:
        """Close the groups of requested studies, once no write of this adapter is in progress."""
        ready: list[Job] = []
        with self._lock:
            studies = [s for s in self._completing
                       if not any(g.inflight for g in self._groups.values() if g.study_uid == s)]
        for study_uid in studies:
            for job in self._store.open_groups_of(study_uid):
                ready.extend(self._close(job, 0.0))
            with self._lock:
                self._completing.discard(study_uid)
                for key in [k for k, g in self._groups.items() if g.study_uid == study_uid]:
                    del self._groups[key]
        return ready

    def _store_failed(self, exc: Exception) -> None:
        if self._trouble is None:
            LOG.error("job store unavailable: %s; receiving answers 0xA700 for new studies, "
                      "open studies are closed once it is back (retried every tick)", exc)
            self._trouble = str(exc)

    def _stored(self, job_id: str) -> int:
        """Complete instances in the job's folder, written by any adapter."""
        input_dir = self._layout.input_dir(job_id)
        if not input_dir.is_dir():
            return 0
        return sum(1 for p in input_dir.iterdir() if p.name.endswith(INSTANCE_SUFFIX) and not p.name.startswith("."))

    def _close(self, job: Job, quiet: float) -> list[Job]:
        """Close ``job``'s group if it is still quiet (exactly one adapter succeeds)."""
        count = self._stored(job.id)
        closed = self._store.close(job.id, quiet, count)
        if closed is None:
            return []  # closed by another adapter, or an instance arrived meanwhile
        if not count:
            # Every store into it failed (e.g. disk full): nothing was acknowledged, no job.
            shutil.rmtree(self._layout.job_dir(job.id), ignore_errors=True)
            LOG.info("job %s: discarded (no instance stored)", job.id)
            return []
        # Only now: before the close, a temporary may be another adapter's instance being written.
        removed = remove_temporaries(self._layout.input_dir(job.id))
        if removed:
            LOG.warning("job %s: removed %d half-written file(s) left by a crash", job.id, removed)
        LOG.info("job %s: ready, %d instance(s) of study %s", closed.id, closed.instance_count, closed.study_uid)
        return [closed]

    def recover(self) -> int:
        """Close this adapter's ``receiving`` jobs that an older release left outside any store
        group; return how many (0 when already done). Open groups need no recovery: they are in
        the store, joined by the next instance of their study or closed once quiet.

        Raises a store or file-system error, having changed nothing in memory; the next
        :meth:`tick` or :meth:`reserve` tries again. Runs once, before any job is created.
        """
        with self._recover_lock:
            if self._recovered:
                return 0
            jobs = self._store.receiving()
            for job in jobs:
                remove_temporaries(self._layout.input_dir(job.id))  # this adapter's, left by its crash
                count = self._stored(job.id)
                if count:
                    self._store.mark_ready(job.id, count)
                    LOG.info("job %s: ready after a restart, %d instance(s) on disk", job.id, count)
                else:
                    self._store.delete(job.id)
                    shutil.rmtree(self._layout.job_dir(job.id), ignore_errors=True)
                    LOG.info("job %s: discarded (no instance stored)", job.id)
            self._recovered = True
        return len(jobs)
