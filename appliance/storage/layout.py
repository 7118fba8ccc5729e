"""Where a job's files are. One layout, used by the adapter, the worker and the exporter::

    <storage.root>/<job id>/            the job's payload folder; its name is the job ID
        input/<SOPInstanceUID>.dcm      received instances, exactly as they arrived (adapter)
        payload/<stage>/...             each pipeline stage's files: reader/, inference/, writer/
        output/seg.dcm                  what leaves the appliance: the exporter sends every
                                        non-hidden file here (put there by the worker's export stage)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

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
