"""Write a small synthetic CT series with pydicom: N slices of 512x512 int16, consistent UIDs.

The pixel content is a cylinder of soft tissue in air with a brighter core; only the
geometry and the identifiers matter to the adapter tests, not anatomy.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, CTImageStorage, ExplicitVRLittleEndian, generate_uid


@dataclass(frozen=True)
class Series:
    """What was written: the UIDs a test checks against, and the files in slice order."""

    study_uid: str
    series_uid: str
    sop_uids: tuple[str, ...]
    files: tuple[Path, ...]


def _pixels(rows: int, cols: int, z: int) -> np.ndarray:
    yy, xx = np.mgrid[0:rows, 0:cols]
    r = np.hypot(yy - rows / 2, xx - cols / 2)
    img = np.full((rows, cols), -1000, dtype=np.int16)  # air, HU
    img[r < rows * 0.4] = 40  # soft tissue
    img[r < rows * (0.1 + 0.002 * (z % 10))] = 300  # contrast-filled core, varies by slice
    return img + 1024  # stored values; RescaleIntercept -1024 maps back to HU


def write_series(
    folder: Path,
    slices: int,
    *,
    rows: int = 512,
    cols: int = 512,
    study_uid: str | None = None,
    patient_id: str = "PHANTOM01",
) -> Series:
    """Write ``slices`` CT instances of ``rows`` x ``cols`` int16 into ``folder`` and describe them.

    Slice spacing is 2.5 mm, pixel spacing 0.7 mm; all slices share one study and series.
    """
    folder.mkdir(parents=True, exist_ok=True)
    study = study_uid or generate_uid()
    series = generate_uid()
    frame = generate_uid()
    now = datetime.datetime.now()
    sops: list[str] = []
    files: list[Path] = []
    for z in range(slices):
        sop = generate_uid()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = sop
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        path = folder / f"ct{z:04d}.dcm"
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = sop
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = series
        ds.FrameOfReferenceUID = frame
        ds.Modality = "CT"
        ds.PatientID = patient_id
        ds.PatientName = "Phantom^Adapter"
        ds.StudyDate = ds.SeriesDate = now.strftime("%Y%m%d")
        ds.StudyTime = now.strftime("%H%M%S")
        ds.AccessionNumber = "A0001"
        ds.StudyID = "1"
        ds.SeriesNumber = 1
        ds.InstanceNumber = z + 1
        ds.ImagePositionPatient = [-179.2, -179.2, -z * 2.5]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [0.7, 0.7]
        ds.SliceThickness = 2.5
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = rows
        ds.Columns = cols
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.RescaleIntercept = -1024
        ds.RescaleSlope = 1
        ds.PixelData = _pixels(rows, cols, z).tobytes()
        ds.save_as(path, enforce_file_format=True)
        sops.append(sop)
        files.append(path)
    return Series(study, series, tuple(sops), tuple(files))
