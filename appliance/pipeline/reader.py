"""Reader stage: choose the series, build the HU volume, write it as MHD and NIfTI.

Files written under ``payload/reader/``:

* ``volume.mhd`` + ``volume.raw`` and/or ``volume.nii.gz``: int16 HU with geometry;
* ``series.json``: the chosen series and why it was chosen, its files (and frame numbers, for a
  multi-frame instance) in volume order and the geometry report, which the writer stage needs to
  reference the source images.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom

from appliance.pipeline.errors import GeometryError
from appliance.pipeline.geometry import SeriesVolume, build_volume
from appliance.pipeline.series import scan_series, select_series
from appliance.pipeline.stage import Stage, StageContext, StageOutput
from appliance.pipeline.volume_io import to_int16, write_image
from appliance.settings.workflow import ReaderSettings, VolumeFormat

MANIFEST = "series.json"


@dataclass(frozen=True)
class ReaderResult:
    """The volume in memory plus the files written for it."""

    volume: SeriesVolume
    series_uid: str
    volume_files: dict[VolumeFormat, Path]
    manifest: Path
    selection: str = ""
    """Why this series was chosen (see :func:`~appliance.pipeline.series.select_series`)."""


def read_series(input_dir: Path, settings: ReaderSettings, out_dir: Path,
                max_voxels: int | None = None) -> ReaderResult:
    """Select the series in ``input_dir`` per ``settings``, build its volume and write it to ``out_dir``.

    ``max_voxels``: the largest volume a job may hold (:func:`appliance.pipeline.memory.max_voxels`).

    Raises:
        SeriesSelectionError: no series matches.
        CorruptSeriesError: the chosen series cannot be read or is inconsistent.
        GeometryError: gaps, uneven spacing or tilt while ``settings.geometry`` is ``"error"``.
        SeriesTooLargeError: the volume has more than ``max_voxels`` voxels.
    """
    selection = select_series(scan_series(input_dir), settings.series, where=str(input_dir))
    candidate = selection.candidate
    volume = build_volume(candidate.files, np.int16, max_voxels)
    if volume.report.warnings and settings.geometry == "error":
        raise GeometryError(f"series {candidate.uid}: " + "; ".join(volume.report.warnings))
    out_dir.mkdir(parents=True, exist_ok=True)
    image = to_int16(volume.image)
    files = {fmt: write_image(image, out_dir / "volume", fmt) for fmt in settings.formats}
    first = pydicom.dcmread(volume.files[0], stop_before_pixels=True)
    manifest = out_dir / MANIFEST
    manifest.write_text(json.dumps({
        "series_instance_uid": candidate.uid,
        "selection": selection.reason,
        "study_instance_uid": str(first.get("StudyInstanceUID", "")),
        "frame_of_reference_uid": str(first.get("FrameOfReferenceUID", "")),
        "files": [str(p) for p in volume.files],
        "sop_instance_uids": list(volume.sop_instance_uids),
        "frames": list(volume.frames),
        "geometry": volume.report.as_dict(),
        "left_out": list(volume.notes),
        "volume_files": {fmt: str(p) for fmt, p in files.items()},
    }, indent=2) + "\n")
    return ReaderResult(volume, candidate.uid, files, manifest, selection.reason)


def load_manifest(path: Path) -> dict[str, object]:
    """The ``series.json`` written by :func:`read_series`."""
    data: dict[str, object] = json.loads(path.read_text())
    return data


class ReaderStage(Stage):
    """Runs :func:`read_series` on the job's input with the workflow's reader settings.

    Artifacts: ``volume`` (MHD if written, else NIfTI), ``volume_mhd``, ``volume_nifti``
    (those written) and ``series_manifest``. Notes: why the series was chosen, what was left out of
    it (e.g. a localizer), then the geometry warnings. ``max_voxels``: see :func:`read_series`.
    """

    name = "reader"

    def __init__(self, max_voxels: int | None = None) -> None:
        self.max_voxels = max_voxels

    def run(self, context: StageContext) -> StageOutput:
        assert context.input_dir is not None
        result = read_series(context.input_dir, context.workflow.reader, context.stage_dir(self.name), self.max_voxels)
        artifacts = {f"volume_{fmt}": path for fmt, path in result.volume_files.items()}
        artifacts["volume"] = result.volume_files.get("mhd") or result.volume_files["nifti"]
        artifacts["series_manifest"] = result.manifest
        return StageOutput(artifacts, (f"series: {result.selection}", *result.volume.notes,
                                       *result.volume.report.warnings))
