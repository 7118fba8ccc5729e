"""Find the DICOM series in a folder and pick the one a workflow should process."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

from appliance.pipeline.errors import SeriesSelectionError
from appliance.settings.workflow import SeriesRules


@dataclass
class SeriesCandidate:
    """One series found in the input: its identifying attributes and instance files."""

    uid: str
    modality: str
    description: str
    image_type: tuple[str, ...]
    number: int | None
    files: list[Path] = field(default_factory=list)


def scan_series(folder: Path) -> list[SeriesCandidate]:
    """Group every DICOM file under ``folder`` (recursively) by SeriesInstanceUID.

    Files that are not DICOM, or have no SeriesInstanceUID, are skipped: job folders may
    hold notes and manifests next to the instances. Only headers are read.
    """
    found: dict[str, SeriesCandidate] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except (InvalidDicomError, OSError, EOFError, ValueError):
            continue
        uid = str(ds.get("SeriesInstanceUID", ""))
        if not uid:
            continue
        if uid not in found:
            number = ds.get("SeriesNumber")
            found[uid] = SeriesCandidate(
                uid=uid,
                modality=str(ds.get("Modality", "")),
                description=str(ds.get("SeriesDescription", "")),
                image_type=tuple(str(v) for v in (ds.get("ImageType") or ())),
                number=int(number) if number not in (None, "") else None,
            )
        found[uid].files.append(path)
    return list(found.values())


def rejection(candidate: SeriesCandidate, rules: SeriesRules) -> str | None:
    """Why ``candidate`` fails ``rules``, or None when it matches."""
    if rules.modality and candidate.modality.upper() != rules.modality.upper():
        return f"modality {candidate.modality or '(none)'} is not {rules.modality}"
    missing = [v for v in rules.image_type if v.upper() not in {t.upper() for t in candidate.image_type}]
    if missing:
        shown = "\\".join(candidate.image_type) or "(none)"
        return f"ImageType {shown} lacks {', '.join(missing)}"
    if len(candidate.files) < rules.min_slices:
        return f"{len(candidate.files)} instances, fewer than {rules.min_slices}"
    if rules.description and not re.search(rules.description, candidate.description, re.IGNORECASE):
        return f"description {candidate.description!r} does not match /{rules.description}/"
    return None


def select_series(candidates: list[SeriesCandidate], rules: SeriesRules, where: str = "input") -> SeriesCandidate:
    """The series to process: among those matching ``rules``, the largest (or first by number).

    Raises:
        SeriesSelectionError: naming every candidate and why it was rejected.
    """
    if not candidates:
        raise SeriesSelectionError(f"no DICOM series found in {where}")
    matching = [c for c in candidates if rejection(c, rules) is None]
    if not matching:
        reasons = "; ".join(f"{c.uid} ({c.description or 'no description'}): {rejection(c, rules)}" for c in candidates)
        raise SeriesSelectionError(f"no series in {where} matches the workflow's rules: {reasons}")
    if rules.choose == "first":
        return min(matching, key=lambda c: (c.number is None, c.number or 0, c.uid))
    # Largest first; ties broken by UID so the choice never depends on directory order.
    return max(matching, key=lambda c: (len(c.files), c.uid))
