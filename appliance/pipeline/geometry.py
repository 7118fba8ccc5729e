"""Assemble a CT volume from single-frame slices, with its geometry checked and reported.

Slices are ordered by their position along the slice normal (row cosine x column cosine),
never by InstanceNumber or file name. The volume's direction matrix has the row, column
and normal cosines as columns and its origin is the first slice's ImagePositionPatient,
the convention of ITK, SimpleITK and NIfTI (via SimpleITK's LPS -> RAS conversion).
"""

# SimpleITK ships py.typed but its SWIG bindings have no annotations: allow calling them.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pydicom
import SimpleITK as sitk
from pydicom.dataset import Dataset

from appliance.pipeline.errors import CorruptSeriesError

# Tolerances: positions in DICOM are often rounded to 0.01 mm; cosines to 1e-6.
_ORIENTATION_TOL = 1e-4
_SPACING_REL_TOL = 0.01
_GAP_FACTOR = 1.5
_TILT_TOL_DEG = 0.05


@dataclass(frozen=True)
class GeometryReport:
    """What the reader found about the slice stack; lengths in mm, angles in degrees."""

    slices: int
    spacing_mm: tuple[float, float, float]
    """(column spacing, row spacing, median slice spacing): the volume's (x, y, z) spacing."""
    gaps: tuple[tuple[int, float], ...] = ()
    """(index of the slice after the gap, distance to the previous slice) for each gap."""
    uneven: bool = False
    """Slice distances differ by more than 1 % without being gaps."""
    tilt_deg: float = 0.0
    """Angle between the slice normal and the direction the slices step along (gantry tilt)."""
    gantry_tilt_attribute_deg: float = 0.0
    warnings: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "slices": self.slices,
            "spacing_mm": list(self.spacing_mm),
            "gaps": [{"before_slice": i, "distance_mm": d} for i, d in self.gaps],
            "uneven": self.uneven,
            "tilt_deg": self.tilt_deg,
            "gantry_tilt_attribute_deg": self.gantry_tilt_attribute_deg,
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True)
class SeriesVolume:
    """The volume in HU (float32, indexed [slice, row, column]) with geometry and slice order."""

    image: sitk.Image
    files: tuple[Path, ...]
    """Source files in volume (slice) order."""
    sop_instance_uids: tuple[str, ...]
    report: GeometryReport


def _floats(ds: Dataset, keyword: str, count: int, path: Path) -> npt.NDArray[np.float64]:
    value = ds.get(keyword)
    try:
        array = np.array([float(v) for v in value], np.float64)
    except (TypeError, ValueError):
        array = np.array([])
    if array.shape != (count,):
        raise CorruptSeriesError(f"{path.name}: {keyword} is missing or malformed ({value!r})")
    return array


def _check_consistent(datasets: list[Dataset], paths: list[Path]) -> npt.NDArray[np.float64]:
    first = datasets[0]
    iop = _floats(first, "ImageOrientationPatient", 6, paths[0])
    for ds, path in zip(datasets[1:], paths[1:], strict=True):
        if (ds.get("Rows"), ds.get("Columns")) != (first.get("Rows"), first.get("Columns")):
            raise CorruptSeriesError(f"{path.name}: {ds.get('Rows')}x{ds.get('Columns')} pixels differs from "
                                     f"{first.get('Rows')}x{first.get('Columns')} in {paths[0].name}")
        if np.abs(_floats(ds, "ImageOrientationPatient", 6, path) - iop).max() > _ORIENTATION_TOL:
            raise CorruptSeriesError(f"{path.name}: ImageOrientationPatient differs from {paths[0].name}; "
                                     "the series mixes orientations")
    return iop


def _report(positions: npt.NDArray[np.float64], normal: npt.NDArray[np.float64], pixel: tuple[float, float],
            tilt_attr: float) -> GeometryReport:
    along = positions @ normal
    steps = np.diff(along)
    warnings: list[str] = []
    if len(steps) == 0:
        # A single slice: use the nominal thickness later; nothing to check.
        return GeometryReport(1, (pixel[1], pixel[0], 1.0), gantry_tilt_attribute_deg=tilt_attr)
    spacing = float(np.median(steps))
    gaps = tuple((int(i + 1), float(d)) for i, d in enumerate(steps) if d > _GAP_FACTOR * spacing)
    regular = [d for d in steps if d <= _GAP_FACTOR * spacing]
    uneven = bool(np.max(np.abs(np.array(regular) - spacing)) > _SPACING_REL_TOL * spacing)
    # Tilt: the slice-to-slice displacement leaves the normal when the gantry was tilted.
    delta = positions[-1] - positions[0]
    in_plane = np.linalg.norm(delta - (delta @ normal) * normal)
    tilt = float(np.degrees(np.arctan2(in_plane, abs(delta @ normal))))
    if gaps:
        listed = ", ".join(f"{d:.2f} mm before slice {i}" for i, d in gaps)
        warnings.append(f"{len(gaps)} gap(s) in the slice stack (median spacing {spacing:.3f} mm): {listed}")
    if uneven:
        warnings.append(f"uneven slice spacing: {steps.min():.3f}-{steps.max():.3f} mm")
    if tilt > _TILT_TOL_DEG:
        warnings.append(f"gantry tilt: slices step {tilt:.2f} degrees off their normal; the volume is sheared")
    elif abs(tilt_attr) > _TILT_TOL_DEG:
        warnings.append(f"GantryDetectorTilt is {tilt_attr:.2f} degrees but the positions show no tilt")
    return GeometryReport(len(positions), (pixel[1], pixel[0], spacing), gaps, uneven,
                          round(tilt, 4), tilt_attr, tuple(warnings))


def _hu(ds: Dataset, path: Path) -> npt.NDArray[np.float32]:
    try:
        pixels = ds.pixel_array
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types for damaged pixel data
        raise CorruptSeriesError(f"{path.name}: pixel data cannot be decoded: {exc}") from exc
    if pixels.ndim != 2:
        raise CorruptSeriesError(f"{path.name}: expected a single-frame image, got pixel shape {pixels.shape}")
    slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    # Per slice: scanners may vary the rescale from slice to slice.
    return (pixels.astype(np.float32) * np.float32(slope) + np.float32(intercept)).astype(np.float32)


def build_volume(paths: list[Path]) -> SeriesVolume:
    """Read ``paths`` (one series) into a HU volume with geometry.

    Raises:
        CorruptSeriesError: unreadable file, missing geometry, mixed sizes or orientations,
            or two slices at the same position.
    """
    datasets: list[Dataset] = []
    for path in paths:
        try:
            datasets.append(pydicom.dcmread(path))
        except Exception as exc:  # noqa: BLE001 - InvalidDicomError, EOFError, OSError, ...
            raise CorruptSeriesError(f"{path.name}: cannot be read as DICOM: {exc}") from exc
    iop = _check_consistent(datasets, paths)
    row, col = iop[:3] / np.linalg.norm(iop[:3]), iop[3:] / np.linalg.norm(iop[3:])
    normal = np.cross(row, col)
    normal /= np.linalg.norm(normal)
    positions = np.array([_floats(ds, "ImagePositionPatient", 3, p) for ds, p in zip(datasets, paths, strict=True)])
    order = np.argsort(positions @ normal, kind="stable")
    positions = positions[order]
    along = positions @ normal
    duplicate = np.flatnonzero(np.diff(along) < 1e-3)
    if duplicate.size:
        i = int(order[duplicate[0]])
        j = int(order[duplicate[0] + 1])
        raise CorruptSeriesError(f"{paths[i].name} and {paths[j].name} are at the same position along the normal "
                                 f"({along[duplicate[0]]:.3f} mm); the series has duplicate slices")
    pixel_spacing = _floats(datasets[0], "PixelSpacing", 2, paths[0])
    tilt_attr = float(datasets[0].get("GantryDetectorTilt", 0.0) or 0.0)
    report = _report(positions, normal, (float(pixel_spacing[0]), float(pixel_spacing[1])), tilt_attr)
    if report.slices == 1:
        thickness = float(datasets[0].get("SliceThickness", 1.0) or 1.0)
        report = GeometryReport(1, (report.spacing_mm[0], report.spacing_mm[1], thickness))
    volume = np.stack([_hu(datasets[i], paths[i]) for i in order])
    image = sitk.GetImageFromArray(volume)
    image.SetSpacing(report.spacing_mm)
    image.SetOrigin(tuple(float(v) for v in positions[0]))
    image.SetDirection(tuple(float(v) for v in np.stack([row, col, normal], axis=1).ravel()))
    return SeriesVolume(
        image=image,
        files=tuple(paths[i] for i in order),
        sop_instance_uids=tuple(str(datasets[i].SOPInstanceUID) for i in order),
        report=report,
    )
