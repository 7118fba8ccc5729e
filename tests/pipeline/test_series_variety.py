"""Series as real archives send them: feet first, prone, coronal, sagittal, tilted, Enhanced
(multi-frame) CT, two contrast phases of one size, anonymised headers, non-ASCII names.

The SEG must overlay the source exactly: each frame at its source plane's position and
orientation, and the labels of each frame on that plane's pixels (checked against the phantom's
ground truth, which is sampled on the same planes), not only a good Dice overall.
"""

# SimpleITK ships py.typed but its SWIG bindings have no annotations: allow calling them.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import highdicom as hd
import numpy as np
import numpy.typing as npt
import pydicom
import pytest
import SimpleITK as sitk

from appliance.phantom import PhantomFiles, PhantomSpec, write_phantom
from appliance.pipeline import StageContext, default_stages, run_stages
from appliance.pipeline.errors import SeriesSelectionError
from appliance.pipeline.geometry import build_volume, check_orientation, orientation_of, reorient
from appliance.pipeline.reader import load_manifest, read_series
from appliance.pipeline.resample import model_grid, probabilities_to_labels
from appliance.pipeline.writer import TYPE2_COPIED, write_outputs
from appliance.triton_local import LocalTriton
from appliance.workflows import ReaderSettings, SeriesRules, TritonSettings, Workflow

from .conftest import dciodvfy_errors, dice, key_file
from .test_inference import ORGAN_DICE

SMALL = PhantomSpec(size=64, slices=20, noise_hu=0.0)
ANONYMISED = (*TYPE2_COPIED, "FrameOfReferenceUID", "SliceThickness")


# -- orientation --------------------------------------------------------------------------


@pytest.mark.parametrize(("position", "stored"), [("FFS", "RPI"), ("HFP", "RAS"), ("FFP", "LAI")])
def test_axial_positions_reach_the_model_as_head_first_supine(position: str, stored: str, tmp_path: Path) -> None:
    """Same anatomy, same sample points: after reorientation the voxels equal the HFS series'."""
    hfs = build_volume(list(write_phantom(tmp_path / "hfs", SMALL).files)).image
    spec = dataclasses.replace(SMALL, patient_position=position)  # type: ignore[arg-type]
    other = build_volume(list(write_phantom(tmp_path / position, spec).files)).image
    assert (orientation_of(hfs), orientation_of(other)) == ("LPS", stored)
    turned = reorient(other, "LPS")
    assert orientation_of(turned) == "LPS"
    np.testing.assert_allclose(turned.GetOrigin(), hfs.GetOrigin(), atol=1e-3)
    np.testing.assert_allclose(turned.GetDirection(), np.eye(3).ravel(), atol=1e-9)
    assert np.array_equal(sitk.GetArrayFromImage(turned), sitk.GetArrayFromImage(hfs))


@pytest.mark.parametrize(("plane", "stored"), [("coronal", "LIP"), ("sagittal", "PIR")])
def test_other_planes_are_turned_to_axial(plane: str, stored: str, tmp_path: Path) -> None:
    spec = dataclasses.replace(SMALL, plane=plane)  # type: ignore[arg-type]
    image = build_volume(list(write_phantom(tmp_path / plane, spec).files)).image
    assert orientation_of(image) == stored
    turned = reorient(image, "LPS")
    np.testing.assert_allclose(turned.GetDirection(), np.eye(3).ravel(), atol=1e-9)
    # Only reordered: the same voxels, the same physical box.
    assert sorted(turned.GetSize()) == sorted(image.GetSize())
    assert np.isclose(sitk.GetArrayFromImage(turned).sum(), sitk.GetArrayFromImage(image).sum())
    assert reorient(image, None) is image


def test_model_output_maps_back_onto_the_series_grid(tmp_path: Path) -> None:
    """A perfect model on the reoriented grid gives back the truth on the series' own (feet-first) grid."""
    spec = dataclasses.replace(SMALL, patient_position="FFS")
    truth = sitk.ReadImage(str(write_phantom(tmp_path / "ffs", spec).ground_truth))
    turned = reorient(truth, "LPS")
    reference = model_grid(turned, size=turned.GetSize())
    classes = sitk.GetArrayFromImage(turned)
    probabilities = np.stack([(classes == c).astype(np.float32) for c in range(4)])
    labels = probabilities_to_labels(probabilities, reference, truth)
    assert np.array_equal(labels, sitk.GetArrayFromImage(truth))


def test_orientation_codes_are_checked() -> None:
    assert check_orientation("ras") == "RAS"
    for bad in ("LLS", "LP", "LPSX", "XYZ"):
        with pytest.raises(ValueError, match="is not a code like LPS"):
            check_orientation(bad)


# -- multi-frame ----------------------------------------------------------------------------


def test_enhanced_multiframe_reads_like_the_single_frame_series(workflows: dict[str, Workflow],
                                                                 tmp_path: Path) -> None:
    single = read_series(write_phantom(tmp_path / "single", SMALL).series_dir, ReaderSettings(), tmp_path / "o1")
    spec = dataclasses.replace(SMALL, multiframe=True)
    files = write_phantom(tmp_path / "multi", spec)
    assert len(files.files) == 1
    multi = read_series(files.series_dir, ReaderSettings(series=SeriesRules(min_slices=20)), tmp_path / "o2")
    assert np.array_equal(sitk.GetArrayFromImage(multi.volume.image), sitk.GetArrayFromImage(single.volume.image))
    np.testing.assert_allclose(multi.volume.image.GetOrigin(), single.volume.image.GetOrigin(), atol=1e-3)
    manifest = load_manifest(multi.manifest)
    # highdicom stores the frames top down; the volume runs bottom up, so frame 20 comes first.
    assert manifest["frames"] == list(range(20, 0, -1))
    assert "the only series" in multi.selection
    truth = tmp_path / "multi" / "ground_truth.nii.gz"
    artifacts, notes = write_outputs(multi.manifest, truth, workflows["OrganSeg"], tmp_path / "writer")
    assert notes == [] and dciodvfy_errors(artifacts["seg"]) == []


def test_multiframe_that_is_not_one_volume_is_a_selection_problem(tmp_path: Path) -> None:
    files = write_phantom(tmp_path / "multi", dataclasses.replace(SMALL, multiframe=True))
    ds = pydicom.dcmread(files.files[0])
    frames = ds.PerFrameFunctionalGroupsSequence
    frames[1].PlanePositionSequence[0].ImagePositionPatient = frames[0].PlanePositionSequence[0].ImagePositionPatient
    ds.save_as(files.files[0])
    with pytest.raises(SeriesSelectionError, match="holds more than one volume"):
        build_volume(list(files.files))
    # Two multi-frame instances in one series: named as a reason the series was not taken.
    shutil.copyfile(files.files[0], files.series_dir / "CT0002.dcm")
    with pytest.raises(SeriesSelectionError, match="2 instances of which 2 are multi-frame"):
        read_series(files.series_dir, ReaderSettings(), tmp_path / "out")


# -- choosing among series ------------------------------------------------------------------


def _two_phases(tmp_path: Path, arterial_time: str = "080000", venous_time: str = "080130") -> Path:
    inbox = tmp_path / "in"
    study = pydicom.uid.generate_uid()
    for name, number, clock in (("Arterial", 2, arterial_time), ("Portal venous", 3, venous_time)):
        spec = dataclasses.replace(SMALL, series_description=name, series_number=number, series_time=clock,
                                   study_uid=study, seed=number)
        shutil.copytree(write_phantom(tmp_path / name, spec).series_dir, inbox / name)
    return inbox


def _chosen(inbox: Path, rules: SeriesRules, out: Path) -> tuple[str, str]:
    result = read_series(inbox, ReaderSettings(series=rules), out)
    return str(pydicom.dcmread(result.volume.files[0], stop_before_pixels=True).SeriesDescription), result.selection


def test_equal_phases_the_later_acquisition_wins_and_the_reason_is_given(tmp_path: Path) -> None:
    inbox = _two_phases(tmp_path)
    chosen, why = _chosen(inbox, SeriesRules(), tmp_path / "o1")
    assert chosen == "Portal venous"
    assert "2 matching series have 20 slices each" in why and "acquired last" in why and "'Arterial'" in why
    chosen, why = _chosen(inbox, SeriesRules(prefer=("arterial",)), tmp_path / "o2")
    assert chosen == "Arterial" and "matches the preferred /arterial/" in why
    chosen, why = _chosen(inbox, SeriesRules(choose="first"), tmp_path / "o3")
    assert chosen == "Arterial" and "lowest series number (2)" in why


def test_equal_phases_without_times_go_to_the_higher_series_number(tmp_path: Path) -> None:
    inbox = _two_phases(tmp_path, "", "")
    for path in inbox.rglob("*.dcm"):
        ds = pydicom.dcmread(path)
        for keyword in ("SeriesTime", "AcquisitionTime", "ContentTime"):
            delattr(ds, keyword)
        ds.save_as(path)
    chosen, why = _chosen(inbox, SeriesRules(), tmp_path / "out")
    assert chosen == "Portal venous" and "highest series number (3 over 2)" in why


# -- headers the SEG must survive -----------------------------------------------------------


def test_anonymised_source_gives_a_seg_with_empty_type2(workflows: dict[str, Workflow], tmp_path: Path) -> None:
    spec = dataclasses.replace(SMALL, drop_attributes=ANONYMISED)
    files = write_phantom(tmp_path / "anon", spec)
    assert "PatientBirthDate" not in pydicom.dcmread(files.files[0])
    reader = read_series(files.series_dir, workflows["OrganSeg"].reader, tmp_path / "reader")
    artifacts, notes = write_outputs(reader.manifest, files.ground_truth, workflows["OrganSeg"], tmp_path / "writer")
    seg = pydicom.dcmread(artifacts["seg"])
    for keyword in TYPE2_COPIED:
        assert keyword in seg and seg[keyword].value in ("", None), keyword
    assert seg.FrameOfReferenceUID
    assert any("lacks type-2" in n for n in notes) and any("FrameOfReferenceUID" in n for n in notes)
    assert any("SliceThickness" in n for n in notes)
    assert dciodvfy_errors(artifacts["seg"]) == []


@pytest.mark.parametrize(("charset", "name"), [
    ("ISO_IR 192", "Müller^Jürgen"),
    ("ISO_IR 100", "Ström^Åsa"),
    ("ISO 2022 IR 6\\ISO 2022 IR 87", "Yamada^Tarou=山田^太郎"),
])
def test_non_ascii_names_survive(charset: str, name: str, workflows: dict[str, Workflow], tmp_path: Path) -> None:
    spec = dataclasses.replace(SMALL, specific_character_set=charset, patient_name=name)
    files = write_phantom(tmp_path / "names", spec)
    reader = read_series(files.series_dir, workflows["OrganSeg"].reader, tmp_path / "reader")
    artifacts, _ = write_outputs(reader.manifest, files.ground_truth, workflows["OrganSeg"], tmp_path / "writer")
    seg = pydicom.dcmread(artifacts["seg"])
    assert str(seg.PatientName) == name
    assert seg.SpecificCharacterSet == pydicom.dcmread(files.files[0]).SpecificCharacterSet


# -- the whole pipeline: the SEG overlays the source ------------------------------------------


def _overlay(seg_path: Path, manifest: dict[str, object]) -> npt.NDArray[np.uint8]:
    """Labels per source plane (volume order), after checking every SEG frame sits on its source plane."""
    files = [Path(str(p)) for p in manifest["files"]]  # type: ignore[attr-defined]
    frames = list(manifest["frames"])  # type: ignore[call-overload]
    sources = {p: pydicom.dcmread(p) for p in dict.fromkeys(files)}
    seg = pydicom.dcmread(seg_path)
    orientation = [float(v) for v in seg.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0]
                   .ImageOrientationPatient]
    spacing = [float(v) for v in seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing]
    for item in seg.PerFrameFunctionalGroupsSequence:
        ref = item.DerivationImageSequence[0].SourceImageSequence[0]
        source = next(ds for ds in sources.values() if ds.SOPInstanceUID == ref.ReferencedSOPInstanceUID)
        if frames[0] is None:
            plane = source
        else:
            fg = source.PerFrameFunctionalGroupsSequence[int(ref.ReferencedFrameNumber) - 1]
            plane = fg.PlanePositionSequence[0]
            source = source.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0]
        np.testing.assert_allclose([float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient],
                                   [float(v) for v in plane.ImagePositionPatient], atol=1e-3)
        np.testing.assert_allclose(orientation, [float(v) for v in source.ImageOrientationPatient], atol=1e-6)
    first = next(iter(sources.values()))
    shared = first.get("SharedFunctionalGroupsSequence")
    expected = first.get("PixelSpacing") or shared[0].PixelMeasuresSequence[0].PixelSpacing
    np.testing.assert_allclose(spacing, [float(v) for v in expected], atol=1e-6)
    parsed = hd.seg.segread(seg_path)
    if frames[0] is None:
        uids = [str(sources[p].SOPInstanceUID) for p in files]
        array = parsed.get_pixels_by_source_instance(source_sop_instance_uids=uids, combine_segments=True)
    else:
        array = parsed.get_pixels_by_source_frame(source_sop_instance_uid=str(sources[files[0]].SOPInstanceUID),
                                                  source_frame_numbers=frames, combine_segments=True,
                                                  assert_missing_frames_are_empty=True)  # no organ: no frame
    return np.asarray(array, np.uint8)


VARIANTS = {
    "feet-first": PhantomSpec(patient_position="FFS"),
    "prone": PhantomSpec(patient_position="HFP"),
    "coronal": PhantomSpec(plane="coronal", length_mm=240.0, slices=48),
    "tilted 15 deg": PhantomSpec(tilt_deg=15.0),
    "enhanced multi-frame": PhantomSpec(multiframe=True),
    "anonymised, UTF-8 name": PhantomSpec(drop_attributes=ANONYMISED, specific_character_set="ISO_IR 192",
                                          patient_name="Ødegård^Zoë"),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_seg_overlays_every_variant(variant: str, triton: LocalTriton, workflows: dict[str, Workflow],
                                    tmp_path: Path) -> None:
    phantom: PhantomFiles = write_phantom(tmp_path / "phantom", VARIANTS[variant])
    job = tmp_path / "job"
    shutil.copytree(phantom.series_dir, job / "input")
    workflow = workflows["OrganSeg"]
    settings = TritonSettings(url=triton.http_url, key_file=Path(key_file(triton)))
    result = run_stages(default_stages(settings), StageContext(job, workflow))
    assert result.succeeded, result.records
    assert dciodvfy_errors(result.artifacts["seg"]) == []
    labels = _overlay(result.artifacts["seg"], load_manifest(result.artifacts["series_manifest"]))
    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(phantom.ground_truth)))
    scores = {c: round(dice(labels == c, truth == c), 3) for c in ORGAN_DICE}
    print(f"{variant}: Dice {scores}")
    assert all(scores[c] >= bound for c, bound in ORGAN_DICE.items()), scores


def test_a_localizer_in_the_series_is_left_out_with_a_note(tmp_path: Path) -> None:
    files = write_phantom(tmp_path / "axial", SMALL)
    scout = write_phantom(tmp_path / "scout", dataclasses.replace(SMALL, plane="coronal", slices=4, size=48))
    inbox = tmp_path / "in"
    shutil.copytree(files.series_dir, inbox)
    ds = pydicom.dcmread(scout.files[0])
    ds.SeriesInstanceUID = pydicom.dcmread(files.files[0]).SeriesInstanceUID
    ds.save_as(inbox / "LOCALIZER.dcm")
    result = read_series(inbox, ReaderSettings(), tmp_path / "out")
    assert result.volume.image.GetSize() == (64, 64, 20) and "LOCALIZER.dcm" not in map(str, result.volume.files)
    (note,) = result.volume.notes
    assert "1 image(s) of 48x48 pixels" in note and "LOCALIZER.dcm" in note
    # Two stacks of one size: neither is the volume.
    for path in write_phantom(tmp_path / "coronal", dataclasses.replace(SMALL, plane="coronal")).files:
        ds = pydicom.dcmread(path)
        ds.SeriesInstanceUID = pydicom.dcmread(files.files[0]).SeriesInstanceUID
        ds.save_as(inbox / f"COR{path.name}")
    (inbox / "LOCALIZER.dcm").unlink()
    with pytest.raises(SeriesSelectionError, match="mixes stacks of the same size"):
        read_series(inbox, ReaderSettings(), tmp_path / "out2")
