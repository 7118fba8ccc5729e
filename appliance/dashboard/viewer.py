"""What the browser viewer (niivue) loads for a job: the CT and the segment numbers as NIfTI on
the same grid, and the segments' names, colours and volumes.

The CT is the reader stage's ``volume.nii.gz`` when the workflow wrote one, else it is converted
from the MetaImage once. The labels are written from the SEG (:mod:`~appliance.dashboard.results`).
Both are kept in the dashboard's cache folder under the SEG's version, so a re-run job gets new
files and an unchanged one is converted once.
"""

# SimpleITK's SWIG bindings have no annotations: allow calling them.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import SimpleITK as sitk

from appliance.dashboard.results import Result, ResultFiles


@dataclass(frozen=True)
class ViewerFiles:
    """The two volumes the viewer loads and the segments it lists."""

    ct: Path
    labels: Path
    segments: list[dict[str, Any]]


def _write_nifti(image: sitk.Image, path: Path) -> Path:
    # Written under a temporary name and renamed: a reader never sees half a file.
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp.nii.gz")
    try:
        sitk.WriteImage(image, str(tmp), useCompression=True)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def prepare(result: Result, files: ResultFiles, folder: Path) -> ViewerFiles:
    """The viewer's files for ``result`` in ``folder`` (written now when missing)."""
    folder.mkdir(parents=True, exist_ok=True)
    reader_nifti = files.volume.with_name("volume.nii.gz")
    ct = reader_nifti if reader_nifti.is_file() else folder / "ct.nii.gz"
    if not ct.is_file():
        _write_nifti(result.ct, ct)
    labels = folder / "labels.nii.gz"
    if not labels.is_file():
        _write_nifti(result.labels, labels)
    segments = [{"number": s.number, "label": s.label, "rgb": list(s.rgb), "hex": s.hex, "volume_ml": s.volume_ml}
                for s in result.segments]
    return ViewerFiles(ct, labels, segments)
