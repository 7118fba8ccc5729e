"""Reader stage: series selection, slice order, HU, geometry checks, files written."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pydicom
import pytest
import SimpleITK as sitk

from appliance.phantom import PhantomFiles, PhantomSpec, render, write_phantom
from appliance.pipeline.errors import CorruptSeriesError, GeometryError, SeriesSelectionError, SeriesTooLargeError
from appliance.pipeline.geometry import build_volume
from appliance.pipeline.reader import ReaderStage, read_series
from appliance.pipeline.stage import StageContext
from appliance.workflows import ReaderSettings, SeriesRules, Workflow


def _copy_shuffled(phantom: PhantomFiles, dest: Path) -> Path:
    # Reverse the file names so that name order and slice order disagree.
    dest.mkdir(parents=True)
    n = len(phantom.files)
    for i, path in enumerate(phantom.files):
        shutil.copyfile(path, dest / f"IMG{n - i:04d}")
    return dest


def test_volume_geometry_and_hu(phantom: PhantomFiles, tmp_path: Path) -> None:
    result = read_series(_copy_shuffled(phantom, tmp_path / "in"), ReaderSettings(formats=("mhd", "nifti")),
                         tmp_path / "out")
    gt = sitk.ReadImage(str(phantom.ground_truth))
    image = result.volume.image
    assert image.GetSize() == gt.GetSize() == (128, 128, 40)
    np.testing.assert_allclose(image.GetSpacing(), (3.125, 3.125, 5.0))
    np.testing.assert_allclose(image.GetOrigin(), gt.GetOrigin(), atol=1e-3)
    np.testing.assert_allclose(image.GetDirection(), np.eye(3).ravel(), atol=1e-6)
    hu, _ = render(PhantomSpec())
    # The reader keeps int16 HU, built slice by slice (no float copy of the volume).
    assert image.GetPixelID() == sitk.sitkInt16 and np.array_equal(sitk.GetArrayFromImage(image), hu)
    assert result.volume.report.warnings == ()
    # Files written: int16 NIfTI and MHD with the same geometry.
    nifti = sitk.ReadImage(str(result.volume_files["nifti"]))
    assert nifti.GetPixelID() == sitk.sitkInt16
    np.testing.assert_allclose(nifti.GetOrigin(), image.GetOrigin(), atol=1e-3)
    mhd = sitk.ReadImage(str(result.volume_files["mhd"]))
    assert np.array_equal(sitk.GetArrayFromImage(mhd), hu)


def test_selection_rules(phantom: PhantomFiles, tmp_path: Path) -> None:
    inbox = tmp_path / "in"
    shutil.copytree(phantom.series_dir, inbox / "ct")
    small = write_phantom(tmp_path / "small", PhantomSpec(size=32, slices=24, seed=99, series_description="Scout"))
    shutil.copytree(small.series_dir, inbox / "scout")
    (inbox / "notes.txt").write_text("not DICOM")
    largest = read_series(inbox, ReaderSettings(), tmp_path / "o1")
    assert largest.series_uid == phantom.series_uid
    by_description = read_series(inbox, ReaderSettings(series=SeriesRules(description="scout")), tmp_path / "o2")
    assert by_description.series_uid == small.series_uid
    with pytest.raises(SeriesSelectionError, match=r"modality CT is not MR") as info:
        read_series(inbox, ReaderSettings(series=SeriesRules(modality="MR")), tmp_path / "o3")
    assert phantom.series_uid in str(info.value) and small.series_uid in str(info.value)
    with pytest.raises(SeriesSelectionError, match="24 slices, fewer than 30"):
        read_series(inbox, ReaderSettings(series=SeriesRules(min_slices=30, description="scout")), tmp_path / "o4")
    with pytest.raises(SeriesSelectionError, match="lacks DERIVED"):
        read_series(inbox, ReaderSettings(series=SeriesRules(image_type=("DERIVED",))), tmp_path / "o5")


def test_empty_input(tmp_path: Path) -> None:
    with pytest.raises(SeriesSelectionError, match="no DICOM series found"):
        read_series(tmp_path, ReaderSettings(), tmp_path / "out")


def test_gap_detected_and_policy(tmp_path: Path) -> None:
    files = write_phantom(tmp_path / "gap", PhantomSpec(size=32, slices=20, drop_slices=(7, 8)))
    volume = build_volume(list(files.files))
    assert volume.report.gaps == ((7, 30.0),)  # 10 mm slices, two missing
    assert volume.report.spacing_mm[2] == pytest.approx(10.0)
    assert "gap" in volume.report.warnings[0]
    strict = ReaderSettings(series=SeriesRules(min_slices=1), geometry="error")
    with pytest.raises(GeometryError, match="1 gap"):
        read_series(files.series_dir, strict, tmp_path / "out")


def test_gantry_tilt_detected(tmp_path: Path) -> None:
    files = write_phantom(tmp_path / "tilt", PhantomSpec(size=32, slices=10, tilt_deg=15.0))
    report = build_volume(list(files.files)).report
    assert report.tilt_deg == pytest.approx(15.0, abs=0.01)
    assert report.gantry_tilt_attribute_deg == 15.0
    assert any("gantry tilt" in w for w in report.warnings)


def test_corrupt_series(phantom: PhantomFiles, tmp_path: Path) -> None:
    inbox = tmp_path / "in"
    shutil.copytree(phantom.series_dir, inbox)
    victim = inbox / phantom.files[10].name
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) - 5000])  # truncated pixel data
    with pytest.raises(CorruptSeriesError, match=rf"{victim.name}: pixel data cannot be decoded"):
        read_series(inbox, ReaderSettings(), tmp_path / "out")
    victim.write_bytes(data)
    ds = pydicom.dcmread(victim)
    del ds.ImagePositionPatient
    ds.save_as(victim)
    with pytest.raises(CorruptSeriesError, match=rf"{victim.name}: ImagePositionPatient is missing"):
        read_series(inbox, ReaderSettings(), tmp_path / "out")


def test_duplicate_slices(phantom: PhantomFiles, tmp_path: Path) -> None:
    inbox = tmp_path / "in"
    shutil.copytree(phantom.series_dir, inbox)
    ds = pydicom.dcmread(phantom.files[3])
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(inbox / "dup.dcm")
    with pytest.raises(CorruptSeriesError, match="duplicate slices"):
        read_series(inbox, ReaderSettings(), tmp_path / "out")


def test_stage_artifacts(phantom: PhantomFiles, workflows: dict[str, Workflow], tmp_path: Path,
                         ground_truth: npt.NDArray[np.uint8]) -> None:
    job = tmp_path / "job"
    shutil.copytree(phantom.series_dir, job / "input")
    workflow = workflows["OrganSeg"]
    reader = dataclasses.replace(workflow.reader, formats=("mhd", "nifti"))
    context = StageContext(job, dataclasses.replace(workflow, reader=reader))
    output = ReaderStage().run(context)
    assert output.artifacts["volume"] == job / "payload" / "reader" / "volume.mhd"
    assert output.artifacts["volume_nifti"].name == "volume.nii.gz"
    # The shipped workflows write the MHD alone: gzip is slow and nothing downstream reads it.
    assert workflow.reader.formats == ("mhd",)
    assert output.artifacts["series_manifest"].is_file()


def test_syntax_outside_the_list_is_named(phantom: PhantomFiles, tmp_path: Path) -> None:
    # A file copied into a job by hand, in a syntax the SCP would have rejected at association.
    inbox = tmp_path / "in"
    shutil.copytree(phantom.series_dir, inbox)
    victim = inbox / phantom.files[4].name
    ds = pydicom.dcmread(victim)
    ds.file_meta.TransferSyntaxUID = pydicom.uid.MPEG2MPML
    ds.PixelData = pydicom.encaps.encapsulate([ds.PixelData])
    ds.save_as(victim)
    with pytest.raises(CorruptSeriesError, match=rf"{victim.name}: transfer syntax 1.2.840.10008.1.2.4.100 is not"):
        read_series(inbox, ReaderSettings(), tmp_path / "out")


def test_a_series_larger_than_a_job_may_hold_is_refused(phantom: PhantomFiles, tmp_path: Path) -> None:
    with pytest.raises(SeriesTooLargeError, match="raise worker.memory-per-job-mb"):
        read_series(phantom.series_dir, ReaderSettings(), tmp_path / "out", max_voxels=128 * 128 * 39)
    assert not (tmp_path / "out" / "volume.mhd").exists()
    read_series(phantom.series_dir, ReaderSettings(), tmp_path / "out", max_voxels=128 * 128 * 40)
