"""Real CT and trained weights for the tests, fetched from PyPI packages and cached under ``.cache/``.

Nothing here is committed; each file comes from a package on PyPI, fetched with pip's own client:

* the source distribution of **TotalSegmentator 2.18.0** (Apache-2.0; the scans come from its
  upstream dataset, CC BY 4.0; their origin is not stated) holds real CT under
  ``tests/reference_files/``:

  - ``example_ct_dicom/``: 20 slices of a contrast-enhanced upper abdomen from a Siemens
    Biograph40 mCT, 512 x 512 at 0.977 mm, 2 mm apart, JPEG 2000 lossless. Anonymised down to empty
    Study, Series and SOP Instance UIDs and SOP Class UID: :func:`dicom_series` fills them.
  - ``example_ct.nii.gz``: abdomen to pelvis, 122 x 101 x 112 voxels of 3 mm.
  - ``example_ct_sm.nii.gz``: a 30-slice slab of it (slices 82-111, the upper abdomen), the grid
    ``example_seg.nii.gz`` covers. **Both headers carry the full volume's origin**, not the slab's:
    placed by their headers they sit 246 mm too low, over the pelvis. :func:`slab_labels`
    returns the labels where they belong, found by matching the slab's pixels to the volume's.
  - ``example_seg.nii.gz`` / ``example_seg_dicom.nii.gz``: TotalSegmentator v2 labels for the slab
    and for the DICOM series. **They are another model's predictions, not expert ground truth.**
    Liver is label 5, spleen 1, right kidney 2, left kidney 3.

* the wheel of **pyliverlesionseg 0.3** (Apache-2.0) holds trained Keras 2.2 HDF5 weights of a
  whole-liver 3-D CNN (see :mod:`appliance.model_repository`).

The cache folder is ``.cache/testdata`` under the repository root (``TESTDATA_CACHE`` overrides
it), and pip keeps its own HTTP cache, so a CI machine downloads each package once.

Command line: ``python -m harness.testdata [--dicom DIR] [--from-nifti DIR]``.
"""

# SimpleITK ships py.typed but its SWIG bindings have no annotations: allow calling them.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

import datetime
import hashlib
import os
import shutil
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, CTImageStorage, ExplicitVRLittleEndian, generate_uid

from appliance.model_repository import sources
from harness import archives
from harness.paths import REPO_ROOT

CACHE = Path(os.environ.get("TESTDATA_CACHE", REPO_ROOT / ".cache" / "testdata"))

TOTALSEG = "totalsegmentator==2.18.0"
LIVER_WHEEL = sources.LIVER_WHEEL

#: TotalSegmentator v2 class indices of the organs the appliance's workflows segment.
TOTALSEG_LABELS = {"spleen": 1, "kidney_right": 2, "kidney_left": 3, "liver": 5}

_REFERENCE = "tests/reference_files"
_WANTED = ("example_ct.nii.gz", "example_ct_sm.nii.gz", "example_seg.nii.gz", "example_seg_dicom.nii.gz",
           "example_ct_dicom/")


class TestDataError(RuntimeError):
    """A package could not be fetched or does not hold what we expect."""


@dataclass(frozen=True)
class ReferenceFiles:
    """Paths of TotalSegmentator's test files, extracted from its source distribution."""

    root: Path
    ct: Path
    """``example_ct.nii.gz``: abdomen to pelvis, 3 mm voxels, 112 slices (int32 HU)."""
    ct_slab: Path
    """``example_ct_sm.nii.gz``: the 30-slice slab of ``ct`` that ``seg`` covers."""
    seg: Path
    """``example_seg.nii.gz``: TotalSegmentator's predicted labels on the slab's grid."""
    dicom_dir: Path
    """``example_ct_dicom/``: 20 Siemens CT slices, JPEG 2000 lossless, UIDs emptied."""
    seg_dicom: Path
    """``example_seg_dicom.nii.gz``: TotalSegmentator's predicted labels for ``dicom_dir``."""
    licence: Path
    """TotalSegmentator's LICENSE (Apache-2.0)."""


def totalsegmentator_sdist(cache: Path = CACHE) -> Path:
    """TotalSegmentator's source distribution (pip needs its default build isolation for the metadata)."""
    try:
        return sources.pip_download(TOTALSEG, cache / "packages", "--no-binary", ":all:")
    except sources.SourceError as exc:
        raise TestDataError(str(exc)) from exc


def liver_wheel(cache: Path = CACHE) -> Path:
    """The pyliverlesionseg 0.3 wheel (it declares Python 3.6; only its files are used, never installed)."""
    try:
        return sources.liver_wheel(cache)
    except sources.SourceError as exc:
        raise TestDataError(str(exc)) from exc


def reference_files(cache: Path = CACHE) -> ReferenceFiles:
    """Extract (once) TotalSegmentator's CT test files from its sdist into ``cache`` and name them."""
    sdist = totalsegmentator_sdist(cache)
    top = sdist.name.removesuffix(".tar.gz")
    root = cache / top
    done = root / ".extracted"
    if not done.exists():
        tmp = cache / f".{top}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        with tarfile.open(sdist) as tar:
            members = [m for m in tar.getmembers() if m.isfile() and _wanted(m.name, top)]
            if not members:
                raise TestDataError(f"{sdist.name} has no {_REFERENCE}/ files")
            archives.extract(tar, tmp, members)
        shutil.rmtree(root, ignore_errors=True)
        (tmp / top).rename(root)
        shutil.rmtree(tmp, ignore_errors=True)
        done.touch()
    ref = root / _REFERENCE
    files = ReferenceFiles(root, ref / "example_ct.nii.gz", ref / "example_ct_sm.nii.gz", ref / "example_seg.nii.gz",
                           ref / "example_ct_dicom", ref / "example_seg_dicom.nii.gz", root / "LICENSE")
    missing = [p for p in (files.ct, files.ct_slab, files.seg, files.dicom_dir, files.seg_dicom, files.licence)
               if not p.exists()]
    if missing:
        raise TestDataError(f"{sdist.name} lacks {', '.join(str(p.relative_to(root)) for p in missing)}")
    return files


def slab_labels(files: ReferenceFiles) -> sitk.Image:
    """``example_seg.nii.gz`` with its origin moved to where its slab lies in ``example_ct.nii.gz``.

    The slab's slices are found in the volume by exact pixel equality (the slab was cut from it
    without resampling), so Dice can be scored in physical space against any grid.

    Raises:
        TestDataError: the slab is not a run of the volume's slices.
    """
    ct = sitk.ReadImage(str(files.ct))
    slab = sitk.GetArrayFromImage(sitk.ReadImage(str(files.ct_slab)))
    volume = sitk.GetArrayFromImage(ct)
    starts = [k for k in range(volume.shape[0] - slab.shape[0] + 1) if np.array_equal(volume[k], slab[0])]
    start = next((k for k in starts if np.array_equal(volume[k:k + slab.shape[0]], slab)), None)
    if start is None:
        raise TestDataError(f"{files.ct_slab.name} is not a run of {files.ct.name}'s slices")
    labels = sitk.ReadImage(str(files.seg))
    labels.SetOrigin(ct.TransformIndexToPhysicalPoint((0, 0, start)))
    return labels


def _wanted(name: str, top: str) -> bool:
    if name == f"{top}/LICENSE":
        return True
    prefix = f"{top}/{_REFERENCE}/"
    return name.startswith(prefix) and name[len(prefix):].startswith(_WANTED)


def _uid(*parts: str) -> str:
    return str(generate_uid(entropy_srcs=list(parts)))


def dicom_series(files: ReferenceFiles, dest: Path, study_uid: str | None = None) -> list[Path]:
    """Copy ``example_ct_dicom`` to ``dest`` with the identifiers the anonymiser emptied filled in.

    StudyInstanceUID and SeriesInstanceUID come from ``study_uid`` (default: derived from the
    files, so the same every time), SOPClassUID and SOPInstanceUID from the file meta. The
    pixel data stay JPEG 2000 lossless, as the scanner's archive sent them.
    """
    dest.mkdir(parents=True, exist_ok=True)
    study = study_uid or _uid("totalsegmentator", "example_ct_dicom", "study")
    series = _uid(study, "series")
    out: list[Path] = []
    for src in sorted(files.dicom_dir.iterdir()):
        ds = pydicom.dcmread(src)
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = series
        # The anonymiser left the SOP identifiers only in the file meta; every type-2 attribute it
        # emptied (patient, accession, study ID) stays empty, as real anonymised data arrive.
        ds.SOPClassUID = ds.get("SOPClassUID") or ds.file_meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = ds.get("SOPInstanceUID") or ds.file_meta.MediaStorageSOPInstanceUID
        path = dest / f"{src.name}.dcm"
        ds.save_as(path, enforce_file_format=True)
        out.append(path)
    return out


def nifti_to_dicom(volume: Path, dest: Path, *, study_uid: str | None = None,
                   description: str = "CT from NIfTI", patient_id: str = "TOTALSEG01") -> list[Path]:
    """Write the HU volume ``volume`` (NIfTI or any SimpleITK format) as a CT series into ``dest``.

    Geometry is the image's own: each slice k gets ImagePositionPatient = origin + k * spacing_z *
    normal and ImageOrientationPatient from the first two direction columns (SimpleITK works in
    DICOM's LPS). Pixels are int16 with RescaleIntercept 0; Explicit VR Little Endian.
    UIDs derive from the file's content hash, so the same volume yields the same study.
    """
    image = sitk.ReadImage(str(volume))
    hu = sitk.GetArrayFromImage(image)
    if hu.ndim != 3:
        raise TestDataError(f"{volume} is not a 3-D volume")
    pixels = np.clip(np.rint(hu), -32768, 32767).astype(np.int16)
    digest = hashlib.sha256(volume.read_bytes()).hexdigest()[:16]
    study = study_uid or _uid("nifti", digest, "study")
    series, frame = _uid(study, digest, "series"), _uid(study, digest, "frame")
    direction = np.array(image.GetDirection(), np.float64).reshape(3, 3)
    row, col, normal = direction[:, 0], direction[:, 1], direction[:, 2]
    sx, sy, sz = image.GetSpacing()
    origin = np.array(image.GetOrigin(), np.float64)
    when = datetime.datetime(2024, 1, 1, 9, 0, 0)
    dest.mkdir(parents=True, exist_ok=True)
    out: list[Path] = []
    for k in range(pixels.shape[0]):
        position = origin + k * sz * normal
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = UID(_uid(series, str(k)))
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = when.strftime("%Y%m%d")
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = when.strftime("%H%M%S")
        ds.AccessionNumber = ""
        ds.Modality = "CT"
        ds.Manufacturer = ""
        ds.KVP = ""
        ds.AcquisitionNumber = ""
        ds.ReferringPhysicianName = ""
        ds.SeriesDescription = description
        ds.PatientName = "TotalSegmentator^Example"
        ds.PatientID = patient_id
        ds.PatientBirthDate = ""
        ds.PatientSex = ""
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = series
        ds.StudyID = ""
        ds.SeriesNumber = 1
        ds.InstanceNumber = k + 1
        ds.FrameOfReferenceUID = frame
        ds.PositionReferenceIndicator = ""
        ds.PatientPosition = "HFS"
        ds.SliceThickness = round(float(sz), 4)
        ds.ImagePositionPatient = [round(float(v), 4) for v in position]
        ds.ImageOrientationPatient = [round(float(v), 6) for v in (*row, *col)]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = int(pixels.shape[1]), int(pixels.shape[2])
        ds.PixelSpacing = [round(float(sy), 6), round(float(sx), 6)]  # row spacing, column spacing
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.RescaleIntercept = 0
        ds.RescaleSlope = 1
        ds.RescaleType = "HU"
        ds.PixelData = pixels[k].tobytes()
        path = dest / f"CT{k + 1:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        out.append(path)
    return out


def main(argv: list[str] | None = None) -> int:
    """Fetch and extract the test data; optionally write the DICOM series. Returns the exit status."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m harness.testdata", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dicom", type=Path, help="write the filled-in 20-slice Siemens series here")
    parser.add_argument("--from-nifti", type=Path, help="write example_ct.nii.gz as a DICOM series here")
    args = parser.parse_args(argv)
    files = reference_files()
    print(f"reference files: {files.root / _REFERENCE}")
    print(f"liver wheel:     {liver_wheel()}")
    if args.dicom:
        print(f"{len(dicom_series(files, args.dicom))} instances in {args.dicom}")
    if args.from_nifti:
        print(f"{len(nifti_to_dicom(files.ct, args.from_nifti))} instances in {args.from_nifti}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
