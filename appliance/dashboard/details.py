"""What the job store does not hold about a study, read once from its first received instance:
patient, accession number, study date and description, modality.

Kept in a small SQLite file in the dashboard's cache folder (``details.sqlite3``), so each payload
folder is read once, also across restarts. A job whose folder has no readable instance yet gets
no entry and is tried again later. Values are as the modality sent them (no normalisation).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from dataclasses import asdict, dataclass, fields
from functools import cached_property
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

from appliance.storage import PayloadLayout

LOG = logging.getLogger(__name__)

_TAGS = ("PatientName", "PatientID", "AccessionNumber", "StudyDate", "StudyDescription", "Modality")


@dataclass(frozen=True)
class StudyDetails:
    """Header values of a job's study ("" where the instance has none)."""

    patient_name: str = ""
    patient_id: str = ""
    accession: str = ""
    study_date: str = ""  #: YYYYMMDD as sent
    study_description: str = ""
    modality: str = ""

    @cached_property
    def text(self) -> str:
        """Everything, lower-case, for searching."""
        return " ".join(asdict(self).values()).lower()

    @property
    def study_date_iso(self) -> str:
        """``YYYY-MM-DD`` when the date is a valid DICOM DA, else as sent."""
        d = self.study_date
        return f"{d[:4]}-{d[4:6]}-{d[6:8]}" if len(d) == 8 and d.isdigit() else d


def read_details(input_dir: Path) -> StudyDetails | None:
    """The details from the first instance in ``input_dir`` (None if there is none readable yet)."""
    try:
        with os.scandir(input_dir) as entries:
            first = next((e.path for e in entries if e.name.endswith(".dcm") and e.is_file()), None)
    except OSError:
        return None
    if first is None:
        return None
    try:
        ds = pydicom.dcmread(first, stop_before_pixels=True, specific_tags=list(_TAGS))
    except (OSError, InvalidDicomError, ValueError) as exc:
        LOG.debug("%s: no details: %s", first, exc)
        return None
    values = [str(ds.get(tag, "") or "") for tag in _TAGS]
    return StudyDetails(*values)


class DetailsCache:
    """Job ID -> :class:`StudyDetails`, in memory and in ``path`` (SQLite); thread-safe."""

    def __init__(self, path: Path, layout: PayloadLayout) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._layout = layout
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        columns = ", ".join(f"{f.name} TEXT NOT NULL" for f in fields(StudyDetails))
        self._db.execute(f"CREATE TABLE IF NOT EXISTS details (job_id TEXT PRIMARY KEY, {columns})")
        self._lock = threading.Lock()
        self._known: dict[str, StudyDetails] = {
            row[0]: StudyDetails(*row[1:]) for row in self._db.execute("SELECT * FROM details")}

    def get(self, job_id: str) -> StudyDetails | None:
        """The cached details of ``job_id`` (None when not read yet)."""
        return self._known.get(job_id)

    def fill(self, job_ids: list[str]) -> int:
        """Read and keep the details of those ``job_ids`` not known yet; return how many were added."""
        found: list[tuple[str, StudyDetails]] = []
        for job_id in job_ids:
            if job_id in self._known:
                continue
            details = read_details(self._layout.input_dir(job_id))
            if details is not None:
                found.append((job_id, details))
        if not found:
            return 0
        with self._lock:
            self._known.update(found)
            marks = ", ".join("?" * (1 + len(fields(StudyDetails))))
            self._db.execute("BEGIN")
            self._db.executemany(f"INSERT OR REPLACE INTO details VALUES ({marks})",
                                 [(job_id, *asdict(d).values()) for job_id, d in found])
            self._db.execute("COMMIT")
        return len(found)

    def close(self) -> None:
        """Close the cache file."""
        with self._lock:
            self._db.close()
