"""One destination's sender: claims that destination's due export tasks and sends them, one at a time.

Per task, one try is one association (:func:`~appliance.exporter.scu.send`) carrying the job's
result files that this destination has not acknowledged yet; each acknowledged file is recorded at
once, so a try cut short by a crash never sends it again. After a transient failure the task goes
back to the queue due ``initial-backoff-seconds * backoff-multiplier**(n-1)`` (capped at
``max-backoff-seconds``) later, and the sender goes on with the next due task: backoff is a
not-before time, never a sleep. A permanent failure, or ``export.max-attempts`` tries, fails the
task at once. Every try is recorded (``appliance jobs show``).

The exporter runs ``dicom.scu.max-associations`` senders per destination, each on a thread of its
own, so a destination that is down or black-holed (accepts TCP, never answers) holds up only its
own senders, for at most ``export.timeout-seconds`` per try.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from appliance.exporter.policy import Severity
from appliance.exporter.scu import send
from appliance.jobs import ExportQueue, ExportRecord, ExportTask, Heartbeat, LeaseLost
from appliance.settings import DestinationConfig, ExportConfig
from appliance.storage import PayloadLayout
from appliance.systemd import Pulse

LOG = logging.getLogger(__name__)


def result_files(output_dir: Path) -> list[Path]:
    """Every regular, non-hidden file under ``output_dir``, in name order."""
    if not output_dir.is_dir():
        return []
    return sorted(
        p for p in output_dir.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(output_dir).parts)
    )


class Sender:
    """Sends ``destination``'s tasks until ``stop`` is set; ``poll_seconds`` is how often an idle
    sender looks for due tasks. ``pulse`` shows the exporter's watchdog that this loop lives."""

    def __init__(self, destination: DestinationConfig, queue: ExportQueue, heartbeat: Heartbeat[tuple[str, str]],
                 layout: PayloadLayout, policy: ExportConfig, calling_ae: str, pulse: Pulse,
                 stop: threading.Event, poll_seconds: float = 0.2) -> None:
        self.destination = destination
        self._queue = queue
        self._heartbeat = heartbeat
        self._layout = layout
        self._policy = policy
        self._calling_ae = calling_ae
        self._pulse = pulse
        self._stop = stop
        self._poll = poll_seconds

    def run(self) -> None:
        """The loop (a thread's target)."""
        name = self.destination.name
        while not self._stop.is_set():
            self._pulse.beat()
            try:
                task = self._queue.claim(name, self._policy.max_attempts)
            except Exception:
                LOG.exception("exporter: job store unavailable")
                task = None
            if task is None:
                self._stop.wait(self._poll)
                continue
            key = (task.job_id, name)
            self._heartbeat.hold(key)
            try:
                self.export(task)
            except LeaseLost as exc:
                LOG.error("%s; leaving it", exc)
            except Exception as exc:  # a bug must not leave the task claimed until its lease expires
                LOG.exception("job %s -> %s: export crashed", task.job_id, name)
                try:
                    self._queue.finish(task, "failed", self._record(task, "failed", 0, 0, f"exporter error: {exc}"))
                except Exception:
                    LOG.exception("job %s -> %s: could not record the failure", task.job_id, name)
            finally:
                self._heartbeat.drop(key)

    def export(self, task: ExportTask) -> None:
        """One try at ``task`` (claimed by this exporter): send, then finish or reschedule it."""
        job_dir = self._layout.job_dir(task.job_id)
        output = self._layout.output_dir(task.job_id)
        if not job_dir.is_dir():
            # On a shared spool this is a host whose mount is missing, not a job without results.
            return self._retry(task, 0, "payload folder missing (is the shared spool mounted on this host?)")
        files = result_files(output)
        if not files:
            self._queue.finish(task, "sent", self._record(task, "skipped", 0, 0, "no result files"))
            return
        pending = [p for p in files if self._name(output, p) not in task.delivered]
        # One try is bounded by the SCU's timeouts: connect + negotiation, then one per file.
        self._pulse.beat(allow=self._policy.timeout_seconds * (len(pending) + 3) + 5)
        state = {"task": task}

        def delivered(path: Path) -> None:
            state["task"] = self._queue.delivered(state["task"], [self._name(output, path)])

        result = send(self.destination, pending, self._calling_ae, self._policy.timeout_seconds, delivered)
        task = state["task"]
        left = [p for p in pending if p not in result.delivered and p not in result.rejected]
        if result.severity is Severity.TRANSIENT and left:
            return self._retry(task, len(left) + len(result.rejected), result.error or "transient failure")
        if result.severity is Severity.PERMANENT or result.rejected:
            detail = (result.error or "some files refused") + "".join(
                f"; {p.name}: {why}" for p, why in list(result.rejected.items())[:5])
            record = self._record(task, "failed", len(task.delivered), len(result.rejected) + len(left), detail)
            self._queue.finish(task, "failed", record)
            LOG.warning("job %s -> %s: failed: %s", task.job_id, task.destination, detail)
            return
        self._queue.finish(task, "sent", self._record(task, "sent", len(task.delivered), 0, ""))
        LOG.info("job %s: exported to %s", task.job_id, task.destination)

    def _retry(self, task: ExportTask, failed: int, error: str) -> None:
        if task.tries >= self._policy.max_attempts:
            record = self._record(task, "failed", len(task.delivered), failed,
                                  f"{error}; gave up after {task.tries} attempt(s)")
            self._queue.finish(task, "failed", record)
            LOG.warning("job %s -> %s: %s", task.job_id, task.destination, record.detail)
            return
        wait = self._policy.backoff(task.tries)
        record = self._record(task, "transient", len(task.delivered), failed, f"{error}; next try in {wait:g} s")
        self._queue.retry_later(task, wait, record)
        LOG.warning("job %s -> %s: %s; try %d of %d in %g s", task.job_id, task.destination, error,
                    task.tries + 1, self._policy.max_attempts, wait)

    @staticmethod
    def _record(task: ExportTask, outcome: str, sent: int, failed: int, detail: str) -> ExportRecord:
        return ExportRecord(task.job_id, task.destination, task.tries, outcome, sent, failed, detail, time.time())

    @staticmethod
    def _name(output: Path, path: Path) -> str:
        return path.relative_to(output).as_posix()
