"""The phantom is a valid, self-consistent CT series whose organs have the documented HU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pydicom
import pytest

from appliance.cli import main
from appliance.phantom import LABELS, PhantomFiles, PhantomSpec, render, write_phantom

from .conftest import dciodvfy_errors


def test_series_is_valid_dicom(phantom: PhantomFiles) -> None:
    assert len(phantom.files) == 40
    assert dciodvfy_errors(phantom.files[0]) == []
    assert dciodvfy_errors(phantom.files[-1]) == []


def test_uids_and_positions_consistent(phantom: PhantomFiles) -> None:
    datasets = [pydicom.dcmread(p, stop_before_pixels=True) for p in phantom.files]
    assert {ds.SeriesInstanceUID for ds in datasets} == {phantom.series_uid}
    assert {ds.StudyInstanceUID for ds in datasets} == {phantom.study_uid}
    assert len({ds.FrameOfReferenceUID for ds in datasets}) == 1
    assert len({ds.SOPInstanceUID for ds in datasets}) == 40
    z = np.array([float(ds.ImagePositionPatient[2]) for ds in datasets])
    np.testing.assert_allclose(np.diff(z), 5.0)
    assert [int(ds.InstanceNumber) for ds in datasets] == list(range(1, 41))


def test_hu_rescale_and_organ_intensities(phantom: PhantomFiles, ground_truth: npt.NDArray[np.uint8]) -> None:
    ds = pydicom.dcmread(phantom.files[25])
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    labels = ground_truth[25]
    # Median per organ, away from edges only in effect: noise is 10 HU, blur is sub-voxel.
    expected = {1: 95, 2: 135, 3: 190}
    for label, centre in expected.items():
        if (labels == label).sum() > 20:
            assert abs(np.median(hu[labels == label]) - centre) < 10, LABELS[label]
    assert hu.min() >= -1024 and np.median(hu[0:5, 0:5]) < -950  # air in the corner


def test_deterministic() -> None:
    a = render(PhantomSpec(size=32, slices=8))
    b = render(PhantomSpec(size=32, slices=8))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_cli(tmp_path: Path) -> None:
    assert main(["phantom", str(tmp_path), "--slices", "12", "--size", "48"]) == 0
    assert len(list((tmp_path / "series").glob("*.dcm"))) == 12
    assert (tmp_path / "ground_truth.nii.gz").is_file() and (tmp_path / "labels.json").is_file()


def test_variants_are_valid_dicom(tmp_path: Path) -> None:
    """Feet-first prone, coronal and tilted phantoms are valid CT images with the matching headers."""
    for name, spec in {"ffp": PhantomSpec(size=32, slices=6, patient_position="FFP"),
                       "coronal": PhantomSpec(size=32, slices=6, plane="coronal"),
                       "tilt": PhantomSpec(size=32, slices=6, tilt_deg=20.0)}.items():
        files = write_phantom(tmp_path / name, spec)
        ds = pydicom.dcmread(files.files[0])
        assert dciodvfy_errors(files.files[0]) == [], name
        assert ds.PatientPosition == spec.patient_position and float(ds.GantryDetectorTilt) == spec.tilt_deg
    with pytest.raises(ValueError, match="no phantom geometry for coronal FFS"):
        write_phantom(tmp_path / "bad", PhantomSpec(plane="coronal", patient_position="FFS"))


def test_cli_variants(tmp_path: Path) -> None:
    assert main(["phantom", str(tmp_path), "--slices", "6", "--size", "32", "--position", "FFS", "--multiframe"]) == 0
    (only,) = (tmp_path / "series").glob("*.dcm")
    ds = pydicom.dcmread(only, stop_before_pixels=True)
    assert ds.NumberOfFrames == 6 and ds.PatientPosition == "FFS"
