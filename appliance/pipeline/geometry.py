"""Assemble a CT volume from its image planes, with its geometry checked and reported.

A plane is a single-frame instance or one frame of a multi-frame (Enhanced or Legacy
Converted Enhanced CT) instance, whose position, orientation, pixel spacing and rescale come
from its per-frame or shared functional groups. Planes are ordered by their position along
the slice normal (row cosine x column cosine), never by InstanceNumber, frame number or file
name. The volume's direction matrix has the row, column and normal cosines as columns and its
origin is the first plane's ImagePositionPatient, the convention of ITK, SimpleITK and NIfTI
(via SimpleITK's LPS -> RAS conversion).

Orientation codes (:func:`orientation_of`, :func:`reorient`) follow DICOM's "to" convention:
"LPS" means the x axis increases towards the patient's Left, y towards Posterior, z towards
Superior, which is how a head-first supine axial series is stored.
"""

# SimpleITK ships py.typed but its SWIG bindings have no annotations: allow calling them.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pydicom
import SimpleITK as sitk
from pydicom.dataset import Dataset
from pydicom.pixels.utils import pixel_array
from pydicom.uid import DeflatedExplicitVRLittleEndian

from appliance.dicomnet.syntaxes import decodable
from appliance.pipeline.errors import CorruptSeriesError, SeriesSelectionError, SeriesTooLargeError

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
    """The volume in HU (float32 or int16, see :func:`build_volume`; indexed [slice, row, column]) with
    geometry and slice order."""

    image: sitk.Image
    files: tuple[Path, ...]
    """Source file of each slice, in volume (slice) order."""
    sop_instance_uids: tuple[str, ...]
    report: GeometryReport
    frames: tuple[int | None, ...] = ()
    """Frame number (1-based) of each slice in its multi-frame instance; None for single-frame instances."""
    notes: tuple[str, ...] = ()
    """What the reader left out of the series (e.g. a localizer in the axial series), and why."""


def _floats(ds: Dataset, keyword: str, count: int, where: str) -> npt.NDArray[np.float64]:
    value = ds.get(keyword)
    try:
        array = np.array([float(v) for v in value], np.float64)
    except (TypeError, ValueError):
        array = np.array([])
    if array.shape != (count,):
        raise CorruptSeriesError(f"{where}: {keyword} is missing or malformed ({value!r})")
    return array


def _group(ds: Dataset, frame: int, sequence: str) -> Dataset | None:
    """The item of functional group ``sequence`` for 0-based ``frame``: per-frame first, else shared."""
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    shared = ds.get("SharedFunctionalGroupsSequence")
    for item in (per_frame[frame] if per_frame and frame < len(per_frame) else None, shared[0] if shared else None):
        if item is not None and item.get(sequence):
            found: Dataset = item.get(sequence)[0]
            return found
    return None


@dataclass(frozen=True)
class _Plane:
    """One image plane: a single-frame instance (``frame`` None) or frame ``frame`` (0-based) of one."""

    path: Path
    ds: Dataset
    frame: int | None
    iop: npt.NDArray[np.float64]
    ipp: npt.NDArray[np.float64]
    spacing: npt.NDArray[np.float64]
    slope: float
    intercept: float

    @property
    def name(self) -> str:
        return self.path.name if self.frame is None else f"{self.path.name} frame {self.frame + 1}"


def _rescale(item: Dataset) -> tuple[float, float]:
    return float(item.get("RescaleSlope", 1.0) or 1.0), float(item.get("RescaleIntercept", 0.0) or 0.0)


def is_multiframe(ds: Dataset) -> bool:
    """Whether ``ds`` carries its planes as frames with functional groups (Enhanced CT and kin)."""
    return "PerFrameFunctionalGroupsSequence" in ds or int(ds.get("NumberOfFrames", 1) or 1) > 1


def _planes(ds: Dataset, path: Path) -> Iterator[_Plane]:
    if not is_multiframe(ds):
        yield _Plane(path, ds, None, _floats(ds, "ImageOrientationPatient", 6, path.name),
                     _floats(ds, "ImagePositionPatient", 3, path.name),
                     _floats(ds, "PixelSpacing", 2, path.name), *_rescale(ds))
        return
    for frame in range(int(ds.get("NumberOfFrames", 1) or 1)):
        where = f"{path.name} frame {frame + 1}"
        groups = [_group(ds, frame, s) for s in ("PlaneOrientationSequence", "PlanePositionSequence",
                                                   "PixelMeasuresSequence", "PixelValueTransformationSequence")]
        orientation, position, measures, transform = (g if g is not None else ds for g in groups)
        yield _Plane(path, ds, frame, _floats(orientation, "ImageOrientationPatient", 6, where),
                     _floats(position, "ImagePositionPatient", 3, where),
                     _floats(measures, "PixelSpacing", 2, where), *_rescale(transform))


def _same_stack(a: _Plane, b: _Plane) -> bool:
    return ((a.ds.get("Rows"), a.ds.get("Columns")) == (b.ds.get("Rows"), b.ds.get("Columns"))
            and float(np.abs(a.iop - b.iop).max()) <= _ORIENTATION_TOL)


def _largest_stack(planes: list[_Plane]) -> tuple[list[_Plane], tuple[str, ...]]:
    """The planes of the series' largest stack (one orientation and size) and a note on the rest.

    Some scanners and archives put a localizer or a reformat into the series of the axial images;
    those are left out, with a note naming them, rather than failing the series.

    Raises:
        SeriesSelectionError: two or more stacks of the same, largest size: no stack is "the" volume.
    """
    stacks: list[list[_Plane]] = []
    for plane in planes:
        stack = next((s for s in stacks if _same_stack(s[0], plane)), None)
        if stack is None:
            stacks.append([plane])
        else:
            stack.append(plane)
    if len(stacks) == 1:
        return planes, ()
    stacks.sort(key=len, reverse=True)

    def describe(stack: list[_Plane]) -> str:
        first = stack[0]
        iop = "\\".join(f"{v:g}" for v in np.round(first.iop, 4))
        return (f"{len(stack)} image(s) of {first.ds.get('Rows')}x{first.ds.get('Columns')} pixels, "
                f"orientation {iop} ({first.name}{', ...' if len(stack) > 1 else ''})")

    if len(stacks[0]) == len(stacks[1]):
        raise SeriesSelectionError("the series mixes stacks of the same size, so none is the volume: "
                                   + "; ".join(describe(s) for s in stacks))
    rest = "; ".join(describe(s) for s in stacks[1:])
    return stacks[0], (f"the volume is the series' largest stack ({len(stacks[0])} images); left out: {rest}",)


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


def _pixels(ds: Dataset, path: Path) -> npt.NDArray[np.generic]:
    meta = getattr(ds, "file_meta", None)
    syntax = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    if syntax and not decodable(syntax):
        raise CorruptSeriesError(f"{path.name}: transfer syntax {syntax} is not one the reader decodes "
                                 "(appliance.dicomnet.syntaxes.READER_SYNTAXES)")
    try:
        # From the file, not the dataset: the datasets are read without their pixel data, so the
        # encoded bytes and pydicom's cached array of every slice are never held all at once. A
        # deflated file must be inflated whole first (pydicom reads pixel data from a file in place).
        source = pydicom.dcmread(path) if syntax == DeflatedExplicitVRLittleEndian else path
        pixels: npt.NDArray[np.generic] = pixel_array(source)
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types for damaged pixel data
        raise CorruptSeriesError(f"{path.name}: pixel data cannot be decoded: {exc}") from exc
    return pixels


def _hu(plane: _Plane, decoded: dict[int, npt.NDArray[np.generic]], out: npt.NDArray[np.float32 | np.int16]) -> None:
    """The plane in HU into ``out`` (float32, or int16 rounded and clipped); ``decoded`` caches a
    multi-frame instance's frames (by dataset id)."""
    if plane.frame is None:
        pixels = _pixels(plane.ds, plane.path)
        if pixels.ndim != 2:
            raise CorruptSeriesError(f"{plane.name}: expected a single-frame image, got pixel shape {pixels.shape}")
    else:
        key = id(plane.ds)
        if key not in decoded:
            frames = _pixels(plane.ds, plane.path)
            decoded[key] = frames if frames.ndim == 3 else frames[np.newaxis]
        pixels = decoded[key][plane.frame]
    if pixels.shape != out.shape:
        raise CorruptSeriesError(f"{plane.name}: {pixels.shape[0]} x {pixels.shape[1]} pixels where the series' "
                                 f"first plane has {out.shape[0]} x {out.shape[1]}")
    # Per plane: scanners may vary the rescale from slice to slice.
    hu = pixels.astype(np.float32) * np.float32(plane.slope) + np.float32(plane.intercept)
    if out.dtype == np.int16:
        np.rint(hu, out=hu)
        np.clip(hu, -32768, 32767, out=hu)
    out[...] = hu


def build_volume(paths: list[Path], dtype: type[np.float32] | type[np.int16] = np.float32,
                 max_voxels: int | None = None) -> SeriesVolume:
    """Read ``paths`` (one series: single-frame instances, or one multi-frame instance) into a HU volume.

    ``dtype``: float32 HU (default), or int16 HU rounded to the nearest integer and clipped, which
    the reader stage writes (half the memory, and no float copy of the whole volume). Single-frame
    instances are decoded on a thread per core: numpy and the JPEG decoders release the GIL for
    most of a slice. ``max_voxels``: a larger volume raises :class:`SeriesTooLargeError` before any
    pixel is decoded.

    Raises:
        SeriesSelectionError: several multi-frame instances, frames at repeated positions (e.g. a
            4D or multi-phase Enhanced CT), or stacks of different orientation or size of which
            none is the largest: not one volume. (A smaller stack next to a larger one, such as
            a localizer, is left out with a note.)
        CorruptSeriesError: unreadable file, missing geometry, a transfer syntax the reader does
            not decode, or two slices at the same position.
        SeriesTooLargeError: more than ``max_voxels`` voxels.
    """
    planes: list[_Plane] = []
    multiframe = 0
    for path in paths:
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception as exc:  # noqa: BLE001 - InvalidDicomError, EOFError, OSError, ...
            raise CorruptSeriesError(f"{path.name}: cannot be read as DICOM: {exc}") from exc
        multiframe += is_multiframe(ds)
        planes.extend(_planes(ds, path))
    if multiframe and len(paths) > 1:
        raise SeriesSelectionError(f"the series has {len(paths)} instances of which {multiframe} are multi-frame; "
                                   "the reader takes one multi-frame instance or single-frame instances only")
    planes, notes = _largest_stack(planes)
    iop = planes[0].iop
    row, col = iop[:3] / np.linalg.norm(iop[:3]), iop[3:] / np.linalg.norm(iop[3:])
    normal = np.cross(row, col)
    normal /= np.linalg.norm(normal)
    positions = np.array([p.ipp for p in planes])
    order = np.argsort(positions @ normal, kind="stable")
    positions = positions[order]
    along = positions @ normal
    duplicate = np.flatnonzero(np.diff(along) < 1e-3)
    if duplicate.size:
        a, b = planes[int(order[duplicate[0]])], planes[int(order[duplicate[0] + 1])]
        where = f"{a.name} and {b.name} are at the same position along the normal ({along[duplicate[0]]:.3f} mm)"
        if multiframe:
            # Several stacks or time points in one instance: a selection problem, not damage.
            raise SeriesSelectionError(f"{where}: the multi-frame instance holds more than one volume "
                                       "(stacks, phases or time points); the reader takes one volume")
        raise CorruptSeriesError(f"{where}; the series has duplicate slices")
    first = planes[0]
    tilt_attr = float(first.ds.get("GantryDetectorTilt", 0.0) or 0.0)
    report = _report(positions, normal, (float(first.spacing[0]), float(first.spacing[1])), tilt_attr)
    if report.slices == 1:
        thickness = float(first.ds.get("SliceThickness", 1.0) or 1.0)
        report = GeometryReport(1, (report.spacing_mm[0], report.spacing_mm[1], thickness))
    decoded: dict[int, npt.NDArray[np.generic]] = {}
    rows, columns = int(first.ds.Rows), int(first.ds.Columns)
    if max_voxels is not None and len(planes) * rows * columns > max_voxels:
        raise SeriesTooLargeError(f"{len(planes)} images of {rows} x {columns} are {len(planes) * rows * columns:,} "
                                  f"voxels, more than the {max_voxels:,} a job may hold; raise "
                                  "worker.memory-per-job-mb (docs/pipeline.md, memory)")
    volume = np.empty((len(planes), rows, columns), dtype)
    jobs = [(planes[i], volume[k]) for k, i in enumerate(order)]
    if multiframe:  # one instance, decoded once into ``decoded``
        for plane, out in jobs:
            _hu(plane, decoded, out)
    else:
        with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
            for _ in pool.map(lambda job: _hu(job[0], decoded, job[1]), jobs):
                pass
    image = sitk.GetImageFromArray(volume)
    del volume
    image.SetSpacing(report.spacing_mm)
    image.SetOrigin(tuple(float(v) for v in positions[0]))
    image.SetDirection(tuple(float(v) for v in np.stack([row, col, normal], axis=1).ravel()))
    ordered = [planes[i] for i in order]
    return SeriesVolume(
        image=image,
        files=tuple(p.path for p in ordered),
        sop_instance_uids=tuple(str(p.ds.SOPInstanceUID) for p in ordered),
        report=report,
        frames=tuple(None if p.frame is None else p.frame + 1 for p in ordered),
        notes=notes,
    )


_AXIS_PAIRS = ("LR", "PA", "SI")


def check_orientation(code: str) -> str:
    """``code`` upper-cased if it is a valid orientation code (one of L/R, P/A, S/I each, in any order).

    Raises:
        ValueError: naming what is wrong.
    """
    upper = code.upper()
    if len(upper) != 3 or sorted(next((i for i, pair in enumerate(_AXIS_PAIRS) if c in pair), 9)
                                  for c in upper) != [0, 1, 2]:
        raise ValueError(f"orientation {code!r} is not a code like LPS or RAS: three letters, one of L/R, "
                         "one of P/A and one of S/I")
    return upper


def orientation_of(image: sitk.Image) -> str:
    """The orientation code of ``image``'s axes (nearest patient axis of each direction column)."""
    code: str = sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(image.GetDirection())
    return code


def reorient(image: sitk.Image, code: str | None) -> sitk.Image:
    """``image`` with its axes permuted and flipped to orientation ``code`` (e.g. "LPS"); None: as is.

    Lossless: voxels are only reordered, never interpolated, and every voxel keeps its physical
    position, so anything computed on the result maps back to ``image`` by resampling in physical
    space. An oblique or tilted volume gets the nearest orientation; its residual rotation stays
    in the direction matrix.
    """
    if code is None:
        return image
    code = check_orientation(code)
    if orientation_of(image) == code:
        return image
    oriented: sitk.Image = sitk.DICOMOrient(image, code)
    return oriented
