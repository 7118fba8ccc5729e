"""The worker process (``appliance worker``): claims ready jobs and runs them, several at once.

* At most ``worker.workers`` jobs run at once (one thread each); a job is claimed only when a
  slot is free, so waiting jobs stay ``ready`` and visible as such.
* At most ``worker.max-concurrent-inference`` requests are in flight to Triton, across all jobs.
* One worker process per job store: an exclusive ``flock`` on ``<database>.worker.lock`` (released
  by the kernel even on ``kill -9``). That is what makes start-up recovery safe: every job still
  ``running`` at start belongs to a worker that is gone, and is resumed or failed
  (``worker.interrupted``, ``worker.max-resumes``) before anything else happens.
* systemd: logs on stdout, ``READY=1`` after recovery, ``WATCHDOG=1`` when asked, and on SIGTERM
  no new claims; running jobs stop at their next stage boundary and go back to ``ready``. Jobs
  still inside a stage after ``worker.shutdown-grace-seconds`` are left to the next start's recovery.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time

from appliance import systemd
from appliance.jobs import Job, JobState, JobStore, control
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
        self.store = JobStore(config.storage.database)
        self._stop = threading.Event()
        self._slots = threading.BoundedSemaphore(self.settings.workers)
        self._threads: set[threading.Thread] = set()
        self._threads_lock = threading.Lock()
        gate = threading.BoundedSemaphore(self.settings.max_concurrent_inference)
        self.runner = JobRunner(self.store, self.layout, catalog, self.settings, gate, self._stop)
        self.heartbeat = control.Heartbeat(self.store, "worker", self._status)

    def _status(self) -> dict[str, object]:
        with self._threads_lock:
            running = sorted(t.name.removeprefix("job-") for t in self._threads)
        return {"running": running, "slots": self.settings.workers}

    def request_stop(self) -> None:
        """Ask :meth:`run` to return (safe from signal handlers and other threads)."""
        self._stop.set()

    def recover(self) -> list[Job]:
        """Resume or fail the jobs a previous worker left ``running`` (call with the lock held)."""
        recovered = self.store.recover_running(self.settings.interrupted == "resume", self.settings.max_resumes)
        for job in recovered:
            if job.state is JobState.READY:
                LOG.warning("job %s: interrupted by a worker crash or restart; resuming (resume %d of at most %d)",
                            job.id, job.resumes, self.settings.max_resumes)
            else:
                LOG.error("job %s: %s", job.id, job.error)
        return recovered

    def run(self) -> int:
        """Serve until :meth:`request_stop`; return the exit status (1: another worker runs)."""
        try:
            lock = hold(self.config.storage.database, "worker")
        except StoreBusy as exc:
            LOG.error("%s", exc)
            self.store.close()
            return 1
        try:
            self.recover()
            systemd.notify(f"READY=1\nSTATUS=running up to {self.settings.workers} job(s)")
            LOG.info("worker ready: %d slot(s), %d concurrent inference call(s), job store %s",
                     self.settings.workers, self.settings.max_concurrent_inference, self.config.storage.database)
            self._serve()
        finally:
            systemd.notify("STOPPING=1")
            self.heartbeat.stopped()
            finished = self._drain(self.settings.shutdown_grace_seconds)
            if finished:
                self.store.close()
            else:
                LOG.warning("jobs still in a stage after %g s; the next start recovers them",
                            self.settings.shutdown_grace_seconds)
            os.close(lock)
            LOG.info("stopped")
        return 0

    def _serve(self) -> None:
        watchdog = systemd.Watchdog()
        poll = self.settings.poll_seconds
        while not self._stop.is_set():
            watchdog.tick()
            self.heartbeat.tick()
            if not self._slots.acquire(timeout=poll):
                continue
            try:
                job = self.store.claim_next_ready()
            except Exception:
                LOG.exception("job store unavailable")
                job = None
            if job is None:
                self._slots.release()
                self._stop.wait(poll)
                continue
            thread = threading.Thread(target=self._run_job, args=(job,), name=f"job-{job.id}", daemon=True)
            with self._threads_lock:
                self._threads.add(thread)
            thread.start()

    def _run_job(self, job: Job) -> None:
        try:
            self.runner.run(job)
        except Exception as exc:  # a bug or a store error must not leave the job 'running'
            LOG.exception("job %s: worker error", job.id)
            with contextlib.suppress(Exception):
                self.store.set_state(job.id, JobState.FAILED, error=f"worker error: {exc}", phase="pipeline")
        finally:
            with self._threads_lock:
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
