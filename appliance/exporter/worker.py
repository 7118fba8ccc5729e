"""The export worker: takes ``exporting`` jobs and sends their results to their destinations.

Per destination, up to ``export.max-attempts`` tries, each one association; after a transient
failure it waits ``initial-backoff-seconds * backoff-multiplier**(n-1)`` (capped at
``max-backoff-seconds``) and resends only what was not yet delivered. A permanent failure ends
that destination at once. Every try is recorded (:meth:`JobStore.record_export`). The job ends
``done`` when every destination got everything, else ``failed`` with phase ``export``
(``appliance jobs retry`` sends again). One worker thread, one job at a time: a job is never
exported twice concurrently, and retries never multiply.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from appliance.exporter.policy import Severity
from appliance.exporter.scu import send
from appliance.jobs import ExportRecord, Job, JobState, JobStore
from appliance.settings import AdapterConfig
from appliance.storage import PayloadLayout

LOG = logging.getLogger(__name__)


def result_files(output_dir: Path) -> list[Path]:
    """Every regular, non-hidden file under ``output_dir``, in name order."""
    if not output_dir.is_dir():
        return []
    return sorted(
        p for p in output_dir.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(output_dir).parts)
    )


class ExportWorker:
    """Background thread; ``poll_seconds`` (default 0.5) is how often it looks for work."""

    def __init__(self, config: AdapterConfig, store: JobStore, layout: PayloadLayout,
                 poll_seconds: float = 0.5) -> None:
        self._config = config
        self._store = store
        self._layout = layout
        self._poll = poll_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="exporter", daemon=True)

    def start(self) -> None:
        """Requeue exports a previous run left half-done, then start working."""
        for job_id in self._store.requeue_interrupted_exports():
            LOG.warning("job %s: export interrupted by a restart; sending again", job_id)
        self._thread.start()

    @property
    def alive(self) -> bool:
        """Whether the export thread runs."""
        return self._thread.is_alive()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the current try (waits up to ``timeout`` seconds)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                job = self._store.claim_next_export()
            except Exception:
                LOG.exception("exporter: job store unavailable")
                job = None
            if job is None:
                self._stop.wait(self._poll)
                continue
            try:
                self.export(job)
            except Exception as exc:  # a bug must not leave the job in 'sending' forever
                LOG.exception("job %s: export crashed", job.id)
                self._store.set_state(job.id, JobState.FAILED, error=f"exporter error: {exc}", phase="export")

    def export(self, job: Job) -> Job:
        """Send ``job``'s results to each of its destinations and record the outcome."""
        files = result_files(self._layout.output_dir(job.id))
        failures: list[str] = []
        # An operator's "retry export" or "send to" names only some destinations.
        targets = job.export_to if job.export_to is not None else job.destinations
        for name in targets:
            if self._stop.is_set():
                # Shutting down mid-job: leave it to be sent again after the restart.
                return self._store.set_state(job.id, JobState.EXPORTING)
            ok = self._export_to(job, name, files)
            if ok is None:
                return self._store.set_state(job.id, JobState.EXPORTING)
            if not ok:
                failures.append(name)
        if failures:
            return self._store.set_state(
                job.id, JobState.FAILED, error=f"export failed to {', '.join(failures)}", phase="export")
        LOG.info("job %s: exported to %s", job.id, ", ".join(targets) or "(no destination)")
        return self._store.set_state(job.id, JobState.DONE)

    def _record(self, job: Job, name: str, attempt: int, outcome: str, sent: int, failed: int,
                detail: str) -> None:
        self._store.record_export(ExportRecord(job.id, name, attempt, outcome, sent, failed, detail, time.time()))

    def _export_to(self, job: Job, name: str, files: list[Path]) -> bool | None:
        """True when all delivered, False when given up, None when interrupted by stop() or a cancel."""
        policy = self._config.export
        destination = self._config.dicom.scu.destination(name)
        if destination is None:
            self._record(job, name, 1, "failed", 0, len(files), "unknown destination (not in dicom.scu)")
            return False
        if not files:
            self._record(job, name, 1, "skipped", 0, 0, "no result files")
            return True
        pending = list(files)
        refused: dict[Path, str] = {}
        delivered = 0
        for attempt in range(1, policy.max_attempts + 1):
            if attempt > 1 and self._store.get(job.id).state is JobState.CANCELLED:
                LOG.info("job %s: cancelled; no more tries to %s", job.id, name)
                return None
            result = send(destination, pending, self._config.dicom.scu.ae_title, policy.timeout_seconds)
            delivered += len(result.delivered)
            refused.update(result.rejected)
            finished = set(result.delivered) | set(result.rejected)
            pending = [p for p in pending if p not in finished]
            if result.severity is Severity.TRANSIENT and pending:
                if attempt == policy.max_attempts:
                    self._record(job, name, attempt, "failed", delivered, len(pending) + len(refused),
                                 f"{result.error}; gave up after {attempt} attempt(s)")
                    return False
                wait = policy.backoff(attempt)
                self._record(job, name, attempt, "transient", delivered, len(pending),
                             f"{result.error}; next try in {wait:g} s")
                LOG.warning("job %s -> %s: %s; try %d of %d in %g s", job.id, name, result.error,
                            attempt + 1, policy.max_attempts, wait)
                if self._stop.wait(wait):
                    return None
                continue
            if result.severity is Severity.PERMANENT or refused:
                detail = (result.error or "some files refused") + "".join(
                    f"; {p.name}: {why}" for p, why in list(refused.items())[:5])
                self._record(job, name, attempt, "failed", delivered, len(refused) + len(pending), detail)
                return False
            self._record(job, name, attempt, "sent", delivered, 0, "")
            return True
        return False
