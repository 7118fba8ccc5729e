"""What the browser viewer (niivue) loads for a job: the CT, the segments as NIfTI, and the
segments' names, colours and volumes.

NiiVue draws an overlay's voxels either fully or not at all, its opacity being the whole volume's.
So that each segment has its own opacity, each gets its own small volume: a 0/1 mask cropped to
the segment's bounding box (``segment-N.nii.gz``, placed by its own origin; niivue puts it on the
CT's grid). Past :data:`MAX_LAYERS` segments that would be too many layers for the browser, and the
viewer loads the segment numbers as one volume on the CT's grid instead (``labels.nii.gz``):
visibility per segment, one opacity for all.

The CT is the reader stage's ``volume.nii.gz`` when the workflow wrote one, else it is converted
from the MetaImage once. The segments come from the SEG (:mod:`~appliance.dashboard.results`).
All is kept in the dashboard's cache folder under the SEG's version, so a re-run job gets new
files and an unchanged one is converted once.
"""

# SimpleITK's SWIG bindings have no annotations: allow calling them.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from appliance.dashboard.results import Result, ResultFiles

#: Segments up to this many get a volume each (their own opacity); more share one label volume.
MAX_LAYERS = 20
#: File names the viewer may ask for.
NAME = re.compile(r"^(ct|labels|segment-[0-9]{1,3})\.nii\.gz$|^segments\.json$")


@dataclass(frozen=True)
class ViewerFiles:
    """The volumes the viewer loads (by file name) and the segments it lists; ``layers``: each
    segment has its own volume ``segment-N.nii.gz``, else they share ``labels.nii.gz``."""

    files: dict[str, Path]
    segments: list[dict[str, Any]]
    layers: bool


def _write_nifti(image: sitk.Image, path: Path) -> Path:
    # Written under a temporary name and renamed: a reader never sees half a file.
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp.nii.gz")
    try:
        sitk.WriteImage(image, str(tmp), useCompression=True)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _segment_mask(result: Result, number: int) -> sitk.Image | None:
    """The 0/1 mask of segment ``number`` cropped to its bounding box (None when it is empty)."""
    labels = sitk.GetArrayViewFromImage(result.labels)  # [z, y, x]
    inside = labels == number
    if not inside.any():
        return None
    box = []
    for axis in range(3):
        hits = np.flatnonzero(inside.any(axis=tuple(a for a in range(3) if a != axis)))
        box.append((int(hits[0]), int(hits[-1]) + 1))
    (z0, z1), (y0, y1), (x0, x1) = box
    mask = sitk.GetImageFromArray(inside[z0:z1, y0:y1, x0:x1].astype(np.uint8))
    mask.SetSpacing(result.labels.GetSpacing())
    mask.SetDirection(result.labels.GetDirection())
    mask.SetOrigin(result.labels.TransformIndexToPhysicalPoint((x0, y0, z0)))
    return mask


def prepare(result: Result, files: ResultFiles, folder: Path) -> ViewerFiles:
    """The viewer's files for ``result`` in ``folder`` (written now when missing)."""
    folder.mkdir(parents=True, exist_ok=True)
    reader_nifti = files.volume.with_name("volume.nii.gz")
    ct = reader_nifti if reader_nifti.is_file() else folder / "ct.nii.gz"
    if not ct.is_file():
        _write_nifti(result.ct, ct)
    out = {"ct.nii.gz": ct}
    layers = len(result.segments) <= MAX_LAYERS
    segments = []
    for s in result.segments:
        item: dict[str, Any] = {"number": s.number, "label": s.label, "rgb": list(s.rgb), "hex": s.hex,
                                "volume_ml": s.volume_ml, "file": None}
        if layers and s.voxels:
            name = f"segment-{s.number}.nii.gz"
            path = folder / name
            if not path.is_file():
                mask = _segment_mask(result, s.number)
                assert mask is not None  # it has voxels
                _write_nifti(mask, path)
            out[name] = path
            item["file"] = name
        segments.append(item)
    if not layers:
        labels = folder / "labels.nii.gz"
        if not labels.is_file():
            _write_nifti(result.labels, labels)
        out["labels.nii.gz"] = labels
    return ViewerFiles(out, segments, layers)
