"""Find the DICOM series in a folder and pick the one a workflow should process, saying why."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
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
    planes: int = 0
    """Image planes: one per single-frame instance, NumberOfFrames per multi-frame instance."""
    multiframe: int = 0
    """How many of the instances are multi-frame."""
    acquired: str = ""
    """SeriesDate + SeriesTime (else the acquisition's), as YYYYMMDDHHMMSS.ffffff; empty if unknown."""

    @property
    def label(self) -> str:
        """How messages name the series: UID, number and description."""
        number = f"series {self.number}" if self.number is not None else "no series number"
        return f"{self.uid} ({number}, {self.description or 'no description'!r})"


@dataclass(frozen=True)
class Selection:
    """The series to process and why it was chosen over the others."""

    candidate: SeriesCandidate
    reason: str


def _timestamp(ds: Dataset) -> str:
    """Date and time of the series (or its acquisition) as one sortable string; empty if unknown."""
    for date_key, time_key in (("SeriesDate", "SeriesTime"), ("AcquisitionDate", "AcquisitionTime"),
                               ("ContentDate", "ContentTime")):
        date, clock = str(ds.get(date_key, "") or ""), str(ds.get(time_key, "") or "")
        if clock:
            whole, _, fraction = clock.replace(":", "").partition(".")
            # TM may omit seconds or minutes ("0805"): pad, so that strings compare as times.
            return f"{date:0<8}{whole:0<6}.{fraction:0<6}"
    return ""


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
                acquired=_timestamp(ds),
            )
        candidate = found[uid]
        candidate.files.append(path)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        candidate.planes += frames
        candidate.multiframe += int("PerFrameFunctionalGroupsSequence" in ds or frames > 1)
    return list(found.values())


def rejection(candidate: SeriesCandidate, rules: SeriesRules) -> str | None:
    """Why ``candidate`` fails ``rules``, or None when it matches."""
    if rules.modality and candidate.modality.upper() != rules.modality.upper():
        return f"modality {candidate.modality or '(none)'} is not {rules.modality}"
    missing = [v for v in rules.image_type if v.upper() not in {t.upper() for t in candidate.image_type}]
    if missing:
        shown = "\\".join(candidate.image_type) or "(none)"
        return f"ImageType {shown} lacks {', '.join(missing)}"
    if candidate.planes < rules.min_slices:
        return f"{candidate.planes} slices, fewer than {rules.min_slices}"
    if rules.description and not re.search(rules.description, candidate.description, re.IGNORECASE):
        return f"description {candidate.description!r} does not match /{rules.description}/"
    if candidate.multiframe and len(candidate.files) > 1:
        return (f"{len(candidate.files)} instances of which {candidate.multiframe} are multi-frame: "
                "the reader takes one multi-frame instance or single-frame instances only")
    return None


def _preference(candidate: SeriesCandidate, prefer: tuple[str, ...]) -> int:
    """Index of the first ``prefer`` pattern the description matches; len(prefer) when none does."""
    return next((i for i, p in enumerate(prefer) if re.search(p, candidate.description, re.IGNORECASE)),
                len(prefer))


def _tie_break(tied: list[SeriesCandidate], rules: SeriesRules) -> Selection:
    """Among equally good candidates: the preferred description, then the latest acquired, then
    the highest series number, then the UID, so the choice never depends on arrival order."""
    ranked = sorted(tied, key=lambda c: (-_preference(c, rules.prefer), c.acquired, c.number or -1, c.uid),
                    reverse=True)
    best, runner = ranked[0], ranked[1]
    if _preference(best, rules.prefer) != _preference(runner, rules.prefer):
        why = f"its description matches the preferred /{rules.prefer[_preference(best, rules.prefer)]}/"
    elif best.acquired != runner.acquired:
        why = f"acquired last ({best.acquired or 'no time'} after {runner.acquired or 'no time'})"
    elif best.number != runner.number:
        why = f"the highest series number ({best.number} over {runner.number}); no acquisition times tell them apart"
    else:
        why = "the highest SeriesInstanceUID: nothing else tells them apart"
    others = ", ".join(c.label for c in ranked[1:])
    return Selection(best, f"chose {best.label} over {others}: {why}")


def select_series(candidates: list[SeriesCandidate], rules: SeriesRules, where: str = "input") -> Selection:
    """The series to process and why.

    Among the series matching ``rules``: with ``choose: largest`` the one with most image planes,
    with ``choose: first`` the lowest SeriesNumber. Ties (e.g. two contrast phases of equal
    size) go to the description matching the earliest ``rules.prefer`` pattern, then to the
    series acquired last (a later phase: portal venous after arterial, contrast after
    non-contrast), then to the higher SeriesNumber, then to the higher UID.

    Raises:
        SeriesSelectionError: naming every candidate and why it was rejected.
    """
    if not candidates:
        raise SeriesSelectionError(f"no DICOM series found in {where}")
    matching = [c for c in candidates if rejection(c, rules) is None]
    if not matching:
        reasons = "; ".join(f"{c.label}: {rejection(c, rules)}" for c in candidates)
        raise SeriesSelectionError(f"no series in {where} matches the workflow's rules: {reasons}")
    if len(matching) == 1:
        others = len(candidates) - 1
        tail = f"; {others} other series did not match the rules" if others else ""
        return Selection(matching[0], f"the only series matching the rules{tail}")
    if rules.choose == "first":
        lowest = min(c.number if c.number is not None else 1 << 31 for c in matching)
        tied = [c for c in matching if (c.number if c.number is not None else 1 << 31) == lowest]
        if len(tied) == 1:
            return Selection(tied[0], f"the lowest series number ({lowest}) of {len(matching)} matching series")
        return _tie_break(tied, rules)
    most = max(c.planes for c in matching)
    tied = [c for c in matching if c.planes == most]
    if len(tied) == 1:
        second = max(c.planes for c in matching if c is not tied[0])
        return Selection(tied[0], f"the largest of {len(matching)} matching series ({most} slices; "
                                  f"next {second})")
    selection = _tie_break(tied, rules)
    return Selection(selection.candidate, f"{len(tied)} matching series have {most} slices each; "
                                          f"{selection.reason}")
