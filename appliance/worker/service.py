"""The worker process (``appliance worker``): claims ready jobs and runs them, several at once.

* At most ``worker.workers`` jobs run at once (one thread each); a job is claimed only when a
  slot is free, so waiting jobs stay ``ready`` and visible as such.
* At most ``worker.max-concurrent-inference`` requests are in flight to Triton, across all jobs.
* Each claimed job is held under a lease (``storage.lease-seconds``) that a heartbeat thread
  renews. A job whose lease expired, because its worker died or its host was lost, is resumed or
  failed (``worker.interrupted``, ``worker.max-resumes``) by whichever worker notices first.
  A worker that finds it lost a lease (it stalled longer than the lease) stops that job at the
  next stage boundary and writes nothing more about it.
* PostgreSQL (``storage.database-url``): any number of workers on any number of hosts share the
  queue. SQLite: one worker per job store, an exclusive ``flock`` on ``<database>.worker.lock``
  (released by the kernel even on ``kill -9``); so every job still ``running`` at its start was
  left by a dead worker and is recovered at once, without waiting for its lease.
* systemd: logs on stdout, ``READY=1`` after recovery, ``WATCHDOG=1`` only while the claim loop
  and the heartbeat both beat, and on SIGTERM no new claims; running jobs stop at their next stage
  boundary and go back to ``ready``. Jobs still inside a stage after
  ``worker.shutdown-grace-seconds`` are left to recovery (their lease expires).
"""

from __future__ import annotations

import logging
import os
import threading
import time

from appliance import systemd
from appliance.jobs import Heartbeat, Job, JobState, PipelineQueue, control, migrate, open_database, owner_id
from appliance.jobs.lock import StoreBusy, hold
from appliance.settings import AdapterConfig
from appliance.storage import PayloadLayout
from appliance.worker.runner import JobRunner
from appliance.workflows.catalog import WorkflowCatalog

LOG = logging.getLogger(__name__)


class Worker:
    """Everything ``appliance worker`` runs, wired from one configuration and workflow catalog."""

    def __init__(self, config: AdapterConfig, catalog: WorkflowCatalog) -> None:
        self.config = config
        self.settings = config.worker
        self.layout = PayloadLayout(config.storage.root)
        self.db = open_database(config.storage.job_store)
        self.lease = config.storage.lease_seconds
        self.queue = PipelineQueue(self.db, owner_id(), self.lease)
        self.liveness = systemd.Liveness()
        self._loop_pulse = self.liveness.pulse("claims", max(10 * self.settings.poll_seconds, 30.0))
        beat_pulse = self.liveness.pulse("heartbeat", self.lease)
        self.heartbeat: Heartbeat[str] = Heartbeat(self.queue.renew, self.lease / 3, on_beat=beat_pulse.beat)
        self._stop = threading.Event()
        self._slots = threading.BoundedSemaphore(self.settings.workers)
        self._jobs: dict[str, threading.Event] = {}  # running job -> its stop event
        self._threads: set[threading.Thread] = set()
        self._threads_lock = threading.Lock()
        gate = threading.BoundedSemaphore(self.settings.max_concurrent_inference)
        self.runner = JobRunner(self.queue, self.layout, catalog, self.settings, gate)
        self.status_beat = control.ServiceHeartbeat(self.db, "worker", self._status)

    def _status(self) -> dict[str, object]:
        with self._threads_lock:
            running = sorted(self._jobs)
        return {"running": running, "slots": self.settings.workers, "owner": self.queue.owner}

    def request_stop(self) -> None:
        """Ask :meth:`run` to return (safe from signal handlers and other threads)."""
        self._stop.set()

    def recover(self, expired_only: bool = True) -> list[Job]:
        """Resume or fail the jobs whose worker is gone (``expired_only``: their lease expired;
        else every ``running`` job, which only the one SQLite worker, holding the lock, may do)."""
        recovered = self.queue.recover(self.settings.interrupted == "resume", self.settings.max_resumes,
                                       expired_only=expired_only)
        for job in recovered:
            if job.state is JobState.READY:
                LOG.warning("job %s: interrupted by a worker crash or restart; resuming (resume %d of at most %d)",
                            job.id, job.resumes, self.settings.max_resumes)
            else:
                LOG.error("job %s: %s", job.id, job.error)
        return recovered

    def run(self) -> int:
        """Serve until :meth:`request_stop`; return the exit status (1: another worker runs on
        this SQLite job store)."""
        lock = None
        try:
            migrate(self.db)
            if not self.db.shared:
                lock = hold(self.config.storage.database, "worker")
            self.recover(expired_only=self.db.shared)
        except StoreBusy as exc:
            LOG.error("%s", exc)
            self.db.close()
            return 1
        self.heartbeat.start()
        try:
            systemd.notify(f"READY=1\nSTATUS=running up to {self.settings.workers} job(s)")
            LOG.info("worker %s ready: %d slot(s), %d concurrent inference call(s), job store %s",
                     self.queue.owner, self.settings.workers, self.settings.max_concurrent_inference, self.db.where)
            self._serve()
        finally:
            systemd.notify("STOPPING=1")
            with self._threads_lock:
                for event in self._jobs.values():
                    event.set()
            self.status_beat.stopped()
            finished = self._drain(self.settings.shutdown_grace_seconds)
            self.heartbeat.stop()
            if finished:
                self.db.close()
            else:
                LOG.warning("jobs still in a stage after %g s; recovery takes them over once their lease expires",
                            self.settings.shutdown_grace_seconds)
            if lock is not None:
                os.close(lock)
            LOG.info("stopped")
        return 0

    def _serve(self) -> None:
        watchdog = systemd.Watchdog()
        poll = self.settings.poll_seconds
        next_recovery = time.monotonic() + self.lease / 2
        while not self._stop.is_set():
            self._loop_pulse.beat()
            watchdog.tick(self.liveness)
            self.status_beat.tick()
            if self.db.shared and time.monotonic() >= next_recovery:
                next_recovery = time.monotonic() + self.lease / 2
                try:
                    self.recover()
                except Exception:
                    LOG.exception("job store unavailable")
            if not self._slots.acquire(timeout=poll):
                continue
            try:
                job = self.queue.claim()
            except Exception:
                LOG.exception("job store unavailable")
                job = None
            if job is None:
                self._slots.release()
                self._stop.wait(poll)
                continue
            self._start(job)

    def _start(self, job: Job) -> None:
        stop = threading.Event()
        thread = threading.Thread(target=self._run_job, args=(job, stop), name=f"job-{job.id}", daemon=True)
        with self._threads_lock:
            self._jobs[job.id] = stop
            self._threads.add(thread)
        self.heartbeat.hold(job.id, stop.set)
        thread.start()

    def _run_job(self, job: Job, stop: threading.Event) -> None:
        try:
            self.runner.run(job, stop)
        except Exception as exc:  # a bug or a store error must not leave the job 'running'
            LOG.exception("job %s: worker error", job.id)
            try:
                self.queue.fail(job, f"worker error: {exc}")
            except Exception:
                LOG.exception("job %s: could not record the failure; recovery takes it over", job.id)
        finally:
            self.heartbeat.drop(job.id)
            with self._threads_lock:
                self._jobs.pop(job.id, None)
                self._threads.discard(threading.current_thread())
            self._slots.release()

    def _drain(self, grace: float) -> bool:
        """Wait up to ``grace`` seconds in all for job threads; True when none is left."""
        deadline = time.monotonic() + grace
        while True:
            with self._threads_lock:
                threads = list(self._threads)
            remaining = deadline - time.monotonic()
            if not threads or remaining <= 0:
                return not threads
            threads[0].join(min(remaining, 0.1))
