"""Writer stage and the whole reader -> inference -> writer run through the stage runner."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import highdicom as hd
import numpy as np
import numpy.typing as npt
import pydicom
import pytest
import SimpleITK as sitk

from appliance.phantom import PhantomFiles
from appliance.pipeline import StageContext, StageRecord, default_stages, run_stages
from appliance.pipeline.reader import read_series
from appliance.pipeline.writer import write_outputs
from appliance.triton_local import LocalTriton, free_ports
from appliance.workflows import TritonSettings, Workflow

from .conftest import dciodvfy_errors, dice, key_file
from .test_inference import ORGAN_DICE


def _seg_labels(seg_path: Path, sources: list[str]) -> npt.NDArray[np.uint8]:
    """Segment numbers per source slice, rebuilt from the SEG by referenced SOP Instance UID."""
    seg = hd.seg.segread(seg_path)
    uids = [str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in sources]
    array = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=uids, combine_segments=True, ignore_spatial_locations=False)
    return np.asarray(array, np.uint8)


def test_seg_round_trip_from_ground_truth(phantom: PhantomFiles, workflows: dict[str, Workflow],
                                         ground_truth: npt.NDArray[np.uint8], tmp_path: Path) -> None:
    """Writing the ground truth as SEG and reading it back loses nothing, geometry included."""
    reader = read_series(phantom.series_dir, workflows["OrganSeg"].reader, tmp_path / "reader")
    artifacts, notes = write_outputs(reader.manifest, phantom.ground_truth, workflows["OrganSeg"], tmp_path / "writer")
    assert notes == []
    seg_path = artifacts["seg"]
    assert dciodvfy_errors(seg_path) == []
    seg = pydicom.dcmread(seg_path)
    assert seg.Modality == "SEG" and seg.SeriesNumber == 901
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == phantom.series_uid
    assert seg.FrameOfReferenceUID == pydicom.dcmread(phantom.files[0]).FrameOfReferenceUID
    segments = [(s.SegmentNumber, s.SegmentLabel, s.SegmentedPropertyTypeCodeSequence[0].CodeValue)
                for s in seg.SegmentSequence]
    assert segments == [(1, "Liver", "10200004"), (2, "Spleen", "78961009"), (3, "Kidneys", "64033007")]
    # Every frame sits where its source slice is.
    positions = {str(pydicom.dcmread(p).SOPInstanceUID): [float(v) for v in pydicom.dcmread(p).ImagePositionPatient]
                 for p in phantom.files}
    for frame in seg.PerFrameFunctionalGroupsSequence:
        source = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        position = [float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient]
        np.testing.assert_allclose(position, positions[source], atol=1e-3)
    manifest = json.loads(reader.manifest.read_text())
    assert np.array_equal(_seg_labels(seg_path, manifest["files"]), ground_truth)
    nifti = sitk.ReadImage(str(artifacts["mask_nifti"]))
    assert np.array_equal(sitk.GetArrayFromImage(nifti), ground_truth)


def test_pipeline_end_to_end(triton: LocalTriton, phantom: PhantomFiles, workflows: dict[str, Workflow],
                             ground_truth: npt.NDArray[np.uint8], tmp_path: Path) -> None:
    job = tmp_path / "job"
    shutil.copytree(phantom.series_dir, job / "input")
    workflow = workflows["OrganSeg"]
    seen: list[StageRecord] = []
    settings = TritonSettings(url=triton.http_url, key_file=key_file(triton))
    result = run_stages(default_stages(settings), StageContext(job, workflow), on_record=seen.append)
    assert result.succeeded, result.records
    assert [r.stage for r in seen] == ["reader", "inference", "writer"]
    assert all((r.duration_s or 0) > 0 and (r.ended_at or 0) >= (r.started_at or 1) for r in seen)
    seg_path = result.artifacts["seg"]
    assert seg_path == job / "payload" / "writer" / "seg.dcm"
    assert dciodvfy_errors(seg_path) == []
    files = json.loads(result.artifacts["series_manifest"].read_text())["files"]
    labels = _seg_labels(seg_path, files)
    scores = {c: dice(labels == c, ground_truth == c) for c in ORGAN_DICE}
    assert all(scores[c] >= bound for c, bound in ORGAN_DICE.items()), scores
    timings = json.loads((job / "payload" / "inference" / "inference.json").read_text())["timings_s"]
    print(f"OrganSeg SEG Dice {scores}; inference timings {timings}; "
          f"stages {[(r.stage, round(r.duration_s, 3)) for r in seen]}")


def test_runner_records_failure(phantom: PhantomFiles, workflows: dict[str, Workflow], tmp_path: Path) -> None:
    job = tmp_path / "job"
    shutil.copytree(phantom.series_dir, job / "input")
    workflow = workflows["LiverSeg"]
    down = TritonSettings(url=f"127.0.0.1:{free_ports(1)[0]}", protocol="grpc")
    result = run_stages(default_stages(down), StageContext(job, workflow))
    assert not result.succeeded
    assert [(r.stage, r.status) for r in result.records] == [("reader", "succeeded"), ("inference", "failed")]
    failed = result.records[-1]
    assert failed.detail.startswith("ServerUnavailableError: ") and "is not reachable" in failed.detail
    assert "seg" not in result.artifacts


def test_missing_artifact_names_stage(workflows: dict[str, Workflow], tmp_path: Path) -> None:
    workflow = workflows["OrganSeg"]
    result = run_stages(default_stages()[2:], StageContext(tmp_path, workflow))
    assert result.records[0].status == "failed"
    assert "run the reader stage first" in result.records[0].detail


def test_seg_rejects_wrong_mask(phantom: PhantomFiles, workflows: dict[str, Workflow], tmp_path: Path) -> None:
    from appliance.pipeline.errors import WriterError

    reader = read_series(phantom.series_dir, workflows["OrganSeg"].reader, tmp_path / "reader")
    wrong = sitk.Image([64, 64, 40], sitk.sitkUInt8)
    sitk.WriteImage(wrong, str(tmp_path / "wrong.mha"))
    with pytest.raises(WriterError, match=r"mask slices are \(64, 64\) but the images are \(128, 128\)"):
        write_outputs(reader.manifest, tmp_path / "wrong.mha", workflows["OrganSeg"], tmp_path / "writer")
