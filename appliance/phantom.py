"""Synthetic abdominal CT phantom: a valid DICOM CT series plus its ground-truth label mask.

The anatomy is analytic (ellipsoids and cylinders in millimetres, patient coordinates
LPS with the body centred on the z axis), so the same phantom can be sampled on any grid
and the ground truth is exact at every voxel centre. Labels follow :data:`LABELS`.

Intensities (HU, before noise): air -1000, fat -100, soft tissue 35, liver 95, spleen
135, kidneys 190, vertebral bone 350-700. Gaussian noise (``noise_hu``) and a small
point-spread blur make the organ boundaries realistic for a threshold-type model.

The same anatomy can be scanned the ways real series come: head or feet first, supine or prone,
axial, coronal or sagittal planes, a tilted gantry, as one Enhanced (multi-frame) CT instance,
and with the header variety of real archives (anonymised type-2 attributes, no Frame of
Reference, non-ASCII names).
"""

# SimpleITK ships py.typed but its SWIG bindings have no annotations: allow calling them.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, CTImageStorage, ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import DSfloat

LABELS: dict[int, str] = {1: "liver", 2: "spleen", 3: "kidneys"}
"""Ground-truth label values; 0 is everything else."""

_AIR, _FAT, _SOFT, _LIVER, _SPLEEN, _KIDNEY, _CANCELLOUS, _CORTICAL = -1000, -100, 35, 95, 135, 190, 350, 700
_INTERCEPT = -1024.0  # stored value 0 is -1024 HU, as on most CT scanners

Plane = Literal["axial", "coronal", "sagittal"]
PatientPosition = Literal["HFS", "FFS", "HFP", "FFP"]

_X, _Y, _Z = np.eye(3)
#: (row cosine, column cosine) in patient coordinates (LPS), as scanners write ImageOrientationPatient.
#: Axial images are displayed with the patient's right on the left and anterior up, so feet first
#: flips the rows and prone flips both.
_COSINES: dict[tuple[Plane, PatientPosition], tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]] = {
    ("axial", "HFS"): (_X, _Y),
    ("axial", "FFS"): (-_X, _Y),
    ("axial", "HFP"): (-_X, -_Y),
    ("axial", "FFP"): (_X, -_Y),
    ("coronal", "HFS"): (_X, -_Z),
    ("sagittal", "HFS"): (_Y, -_Z),
}


@dataclass(frozen=True)
class PhantomSpec:
    """What to generate. Defaults give a 128 x 128 x 40 series of 3.125 x 3.125 x 5 mm voxels."""

    size: int = 128
    """Rows and columns per slice."""
    slices: int = 40
    fov_mm: float = 400.0
    """In-plane field of view; pixel spacing is ``fov_mm / size``."""
    length_mm: float = 200.0
    """Scan length along z; slice spacing is ``length_mm / slices``."""
    noise_hu: float = 10.0
    """Standard deviation of the added Gaussian noise, HU."""
    seed: int = 7
    """Seeds the noise and the UIDs, so the same spec gives the same files."""
    tilt_deg: float = 0.0
    """Gantry tilt: image planes tilted about the x axis while the table moves along z."""
    drop_slices: tuple[int, ...] = ()
    """Slice indices left out of the written series, to simulate gaps."""
    patient_id: str = "PHANTOM-001"
    series_description: str = "Abdomen phantom"
    plane: Plane = "axial"
    """Image plane; slices step along its normal, ``length_mm`` across the body for coronal/sagittal."""
    patient_position: PatientPosition = "HFS"
    """Head/feet first, supine/prone (axial only): sets PatientPosition and ImageOrientationPatient."""
    multiframe: bool = False
    """Write one Legacy Converted Enhanced CT instance (all slices as frames) instead of one file per slice."""
    bits_stored: int = 16
    """BitsStored (and HighBit + 1); 12 is common on CT and what JPEG Extended (12-bit) encodes."""
    study_uid: str | None = None
    """StudyInstanceUID to use, e.g. to put two phantom series in one study; None: derived from the spec."""
    series_number: int = 1
    series_time: str = "080000"
    """SeriesTime and AcquisitionTime (HHMMSS): which of two contrast phases was acquired later."""
    patient_name: str = "Phantom^Abdomen"
    specific_character_set: str = "ISO_IR 100"
    drop_attributes: tuple[str, ...] = ()
    """Keywords deleted from every instance, as anonymisers do (e.g. PatientBirthDate, FrameOfReferenceUID)."""


@dataclass(frozen=True)
class PhantomFiles:
    """What :func:`write_phantom` produced."""

    series_dir: Path
    files: tuple[Path, ...]
    ground_truth: Path
    """Label mask as NIfTI (uint8) on the CT grid."""
    labels: Path
    """JSON mapping label value -> organ name."""
    study_uid: str
    series_uid: str


@dataclass(frozen=True)
class _Ellipsoid:
    center: tuple[float, float, float]
    radii: tuple[float, float, float]

    def inside(self, x: npt.NDArray[np.float64], y: npt.NDArray[np.float64], z: npt.NDArray[np.float64]
               ) -> npt.NDArray[np.bool_]:
        (cx, cy, cz), (rx, ry, rz) = self.center, self.radii
        inside: npt.NDArray[np.bool_] = ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 + ((z - cz) / rz) ** 2 <= 1.0
        return inside


def _cylinder(cx: float, cy: float, r: float) -> _Ellipsoid:
    # An ellipsoid far longer than any scan is a cylinder along z.
    return _Ellipsoid((cx, cy, 0.0), (r, r, 1e6))


def _anatomy(z_mid: float) -> list[tuple[_Ellipsoid, int, int]]:
    """(shape, HU, label) in painting order: later shapes overwrite earlier ones."""
    liver = _Ellipsoid((-70.0, -25.0, z_mid + 25.0), (80.0, 62.0, 75.0))
    spleen = _Ellipsoid((85.0, 35.0, z_mid + 35.0), (32.0, 45.0, 50.0))
    kidneys = [_Ellipsoid((sx * 68.0, 62.0, z_mid - 35.0), (27.0, 30.0, 52.0)) for sx in (-1.0, 1.0)]
    # Perirenal fat keeps kidneys and liver apart, as in real anatomy.
    perirenal = [_Ellipsoid(k.center, (k.radii[0] + 9, k.radii[1] + 9, k.radii[2] + 9)) for k in kidneys]
    return [
        (_Ellipsoid((0.0, 0.0, 0.0), (170.0, 125.0, 1e6)), _FAT, 0),
        (_Ellipsoid((0.0, 0.0, 0.0), (155.0, 110.0, 1e6)), _SOFT, 0),
        (_Ellipsoid((20.0, -50.0, z_mid), (30.0, 25.0, 60.0)), _FAT, 0),
        (liver, _LIVER, 1),
        (spleen, _SPLEEN, 2),
        *[(p, _FAT, 0) for p in perirenal],
        *[(k, _KIDNEY, 3) for k in kidneys],
        (_cylinder(0.0, 85.0, 22.0), _CORTICAL, 0),
        (_cylinder(0.0, 85.0, 17.0), _CANCELLOUS, 0),
    ]


def _slice_geometry(spec: PhantomSpec) -> Iterator[tuple[int, npt.NDArray[np.float64], npt.NDArray[np.float64],
                                                         npt.NDArray[np.float64]]]:
    """Yield (index, position, row cosine, column cosine) per slice, positions in mm (LPS).

    Slices step along the plane's normal (for axial HFS: +z, feet to head), centred on the
    anatomy; with tilt the image plane turns about the row direction while the table still
    steps along the untilted normal, so the stack is sheared as on a real tilted gantry.
    """
    if (spec.plane, spec.patient_position) not in _COSINES:
        raise ValueError(f"no phantom geometry for {spec.plane} {spec.patient_position}: "
                         f"choose one of {sorted(_COSINES)}")
    row, col = _COSINES[(spec.plane, spec.patient_position)]
    axis = np.cross(row, col)
    pixel = spec.fov_mm / spec.size
    dz = spec.length_mm / spec.slices
    t = np.deg2rad(spec.tilt_deg)
    col = np.cos(t) * col - np.sin(t) * axis
    half = (spec.size - 1) * pixel / 2.0
    # The anatomy is centred on (0, 0, length / 2); the axial stack spans z = 0 .. length - dz.
    middle = np.array([0.0, 0.0, spec.length_mm / 2.0]) - dz / 2.0 * np.abs(axis)
    for k in range(spec.slices):
        centre = middle + (k - (spec.slices - 1) / 2.0) * dz * axis
        yield k, centre - half * row - half * col, row, col


def render(spec: PhantomSpec) -> tuple[npt.NDArray[np.int16], npt.NDArray[np.uint8]]:
    """Sample the phantom: HU volume (int16) and labels (uint8), both indexed [slice, row, column]."""
    pixel = spec.fov_mm / spec.size
    idx = np.arange(spec.size, dtype=np.float64) * pixel
    hu = np.empty((spec.slices, spec.size, spec.size), np.float32)
    labels = np.zeros(hu.shape, np.uint8)
    shapes = _anatomy(spec.length_mm / 2.0)
    for k, origin, row, col in _slice_geometry(spec):
        # Patient coordinates of every pixel centre: origin + c * row + r * col.
        pts = origin[:, None, None] + col[:, None, None] * idx[None, :, None] + row[:, None, None] * idx[None, None, :]
        x, y, z = pts[0], pts[1], pts[2]
        plane = np.full(x.shape, float(_AIR), np.float32)
        lab = np.zeros(x.shape, np.uint8)
        for shape, value, label in shapes:
            inside = shape.inside(x, y, z)
            plane[inside] = value
            lab[inside] = label
        hu[k], labels[k] = plane, lab
    # A point-spread blur of ~0.8 mm (scanner resolution) gives partial-volume boundaries.
    img = sitk.GetImageFromArray(hu)
    img.SetSpacing((pixel, pixel, spec.length_mm / spec.slices))
    hu = sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(img, 0.8))
    rng = np.random.default_rng(spec.seed)
    hu += rng.normal(0.0, spec.noise_hu, hu.shape).astype(np.float32)
    return np.clip(np.rint(hu), -1024, 3071).astype(np.int16), labels


def _uid(spec: PhantomSpec, what: str) -> str:
    # Deterministic UIDs: the same spec always yields the same study/series/instances.
    return str(generate_uid(entropy_srcs=[str(spec), what]))


def _ds(value: float) -> DSfloat:
    # Decimal strings hold 16 characters: 400 / 96 mm must be shortened, not written in full.
    return DSfloat(value, auto_format=True)


def _study_uid(spec: PhantomSpec) -> str:
    return spec.study_uid or _uid(spec, "study")


def _slice_dataset(spec: PhantomSpec, k: int, number: int, origin: npt.NDArray[np.float64],
                   row: npt.NDArray[np.float64], col: npt.NDArray[np.float64], pixels: npt.NDArray[np.int16]
                   ) -> Dataset:
    pixel = spec.fov_mm / spec.size
    when = datetime.datetime(2024, 1, 1, 8, 0, 0)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = UID(_uid(spec, f"instance-{k}"))
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.SpecificCharacterSet = spec.specific_character_set
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = when.strftime("%Y%m%d")
    ds.StudyTime = ds.ContentTime = when.strftime("%H%M%S")
    ds.SeriesTime = ds.AcquisitionTime = spec.series_time
    ds.AccessionNumber = "PH0001"
    ds.Modality = "CT"
    ds.Manufacturer = "appliance phantom"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "Synthetic abdomen"
    ds.SeriesDescription = spec.series_description
    ds.PatientName = spec.patient_name
    ds.PatientID = spec.patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.BodyPartExamined = "ABDOMEN"
    ds.SliceThickness = _ds(spec.length_mm / spec.slices)
    ds.KVP = 120
    ds.GantryDetectorTilt = _ds(spec.tilt_deg)
    ds.PatientPosition = spec.patient_position
    ds.StudyInstanceUID = _study_uid(spec)
    ds.SeriesInstanceUID = _uid(spec, "series")
    ds.StudyID = "1"
    ds.SeriesNumber = spec.series_number
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = number
    ds.ImagePositionPatient = [round(float(v), 4) for v in origin]
    ds.ImageOrientationPatient = [round(float(v), 6) for v in (*row, *col)]
    ds.FrameOfReferenceUID = _uid(spec, "frame-of-reference")
    ds.PositionReferenceIndicator = ""
    ds.SliceLocation = round(float(origin[2]), 4)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = spec.size
    ds.PixelSpacing = [_ds(pixel), _ds(pixel)]
    ds.BitsAllocated = 16
    ds.BitsStored = spec.bits_stored
    ds.HighBit = spec.bits_stored - 1
    ds.PixelRepresentation = 0
    ds.WindowCenter = 40
    ds.WindowWidth = 400
    ds.RescaleIntercept = _INTERCEPT
    ds.RescaleSlope = 1.0
    ds.RescaleType = "HU"
    ds.PixelData = (pixels.astype(np.int32) - int(_INTERCEPT)).astype(np.uint16).tobytes()
    return ds


def write_phantom(out_dir: str | Path, spec: PhantomSpec | None = None) -> PhantomFiles:
    """Write the series to ``out_dir/series/`` and the ground truth to ``out_dir/ground_truth.nii.gz``.

    Slices in ``spec.drop_slices`` are skipped (a gap) but keep their place in the ground truth.
    The ground truth's slices are in the series' own order (along the plane's normal).
    """
    spec = spec or PhantomSpec()
    out = Path(out_dir)
    series_dir = out / "series"
    series_dir.mkdir(parents=True, exist_ok=True)
    hu, labels = render(spec)
    datasets: list[Dataset] = []
    for k, origin, row, col in _slice_geometry(spec):
        if k in spec.drop_slices:
            continue
        ds = _slice_dataset(spec, k, len(datasets) + 1, origin, row, col, hu[k])
        for keyword in spec.drop_attributes:
            if keyword in ds:
                delattr(ds, keyword)
        datasets.append(ds)
    files: list[Path] = []
    if spec.multiframe:
        files.append(_write_multiframe(spec, datasets, series_dir / "CT0001.dcm"))
    else:
        for number, ds in enumerate(datasets, start=1):
            path = series_dir / f"CT{number:04d}.dcm"
            ds.save_as(path, enforce_file_format=True)
            files.append(path)
    first = next(_slice_geometry(spec))
    gt = sitk.GetImageFromArray(labels)
    pixel = spec.fov_mm / spec.size
    gt.SetSpacing((pixel, pixel, spec.length_mm / spec.slices))
    gt.SetOrigin(tuple(float(v) for v in first[1]))
    row, col = first[2], first[3]
    normal = np.cross(row, col)
    gt.SetDirection(tuple(float(v) for v in np.stack([row, col, normal], axis=1).ravel()))
    gt_path = out / "ground_truth.nii.gz"
    sitk.WriteImage(gt, str(gt_path), useCompression=True)
    labels_path = out / "labels.json"
    labels_path.write_text(json.dumps({str(k): v for k, v in LABELS.items()}, indent=2) + "\n")
    return PhantomFiles(series_dir, tuple(files), gt_path, labels_path, _study_uid(spec), _uid(spec, "series"))


def _write_multiframe(spec: PhantomSpec, datasets: list[Dataset], path: Path) -> Path:
    """The slices as one Legacy Converted Enhanced CT instance (per-frame positions, shared orientation)."""
    import highdicom  # only multi-frame phantoms need it

    uid = _uid(spec, "series")
    enhanced = highdicom.legacy.LegacyConvertedEnhancedCTImage(
        datasets, series_instance_uid=uid, series_number=spec.series_number,
        sop_instance_uid=_uid(spec, "multiframe"), instance_number=1)
    for keyword in spec.drop_attributes:
        if keyword in enhanced:
            delattr(enhanced, keyword)
    enhanced.save_as(path, enforce_file_format=True)
    return path
