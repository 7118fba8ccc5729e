"""Where a job's files are. One layout, used by the adapter, the worker and the exporter::

    <storage.root>/<job id>/            the job's payload folder; its name is the job ID
        input/<SOPInstanceUID>.dcm      received instances, exactly as they arrived (adapter)
        payload/<stage>/...             each pipeline stage's files: reader/, inference/, writer/
        output/seg.dcm                  what leaves the appliance: the exporter sends every
                                        non-hidden file here (put there by the worker's export stage)
    <storage.root>/.removing-<job id>/  a folder being deleted (retention); never read
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from appliance.storage.durable import fsync_dir

#: Job IDs are folder names, so they are restricted to characters every filesystem accepts.
JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class PayloadLayout:
    """The payload folder tree under ``root`` (``storage.root`` of the configuration)."""

    root: Path

    def job_dir(self, job_id: str) -> Path:
        """The payload folder of ``job_id``: its name *is* the job ID."""
        if not JOB_ID.match(job_id):
            raise ValueError(f"not a job ID: {job_id!r}")
        return self.root / job_id

    def input_dir(self, job_id: str) -> Path:
        """Received instances, one ``<SOPInstanceUID>.dcm`` each, exactly as they arrived."""
        return self.job_dir(job_id) / "input"

    def payload_dir(self, job_id: str) -> Path:
        """Working files of the pipeline, one sub-folder per stage; rebuilt at each run of the job."""
        return self.job_dir(job_id) / "payload"

    def output_dir(self, job_id: str) -> Path:
        """Results the pipeline writes; the exporter sends every file in it."""
        return self.job_dir(job_id) / "output"

    def removing_dir(self, job_id: str) -> Path:
        """Where :meth:`remove_job` moves a job's folder before deleting it (hidden, never a job ID)."""
        return self.root / f".removing-{self.job_dir(job_id).name}"

    def remove_job(self, job_id: str) -> int:
        """Delete the payload folder of ``job_id``; return the bytes its files held (0 if it is gone).

        The folder is first renamed to :meth:`removing_dir` (one atomic, synced step), so no
        half-deleted folder is ever seen under the job's name; a removal cut short by a crash is
        finished by calling this again. Idempotent, and safe when two processes call it at once.
        """
        folder, hidden = self.job_dir(job_id), self.removing_dir(job_id)
        with contextlib.suppress(FileNotFoundError):
            folder.rename(hidden)
            fsync_dir(self.root)
        freed = 0
        for parent, _dirs, files in os.walk(hidden):
            for name in files:
                with contextlib.suppress(FileNotFoundError):
                    freed += os.lstat(os.path.join(parent, name)).st_blocks * 512
        shutil.rmtree(hidden, ignore_errors=True)
        return freed
