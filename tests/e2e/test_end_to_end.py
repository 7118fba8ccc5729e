"""A CT study in, a DICOM SEG in the PACS out: storescu -> adapter -> job -> worker -> Triton -> SEG -> Orthanc."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pipeline.conftest import dciodvfy_errors, dice
from pipeline.test_inference import ORGAN_DICE
from pipeline.test_writer import _seg_labels

from appliance.jobs import Job, JobState
from appliance.phantom import PhantomFiles
from appliance.triton_local import LocalTriton
from harness import scoring, testdata

from .e2ekit import Orthanc, Stack, seg_in_orthanc
from .e2ekit import storescu as send

STAGES = ["reader", "inference", "writer", "export"]
# LiverSeg's liver Dice on real CT against TotalSegmentator's labels (another model's predictions,
# not expert truth). Measured 0.960 (abdomen to pelvis) and 0.960 (20-slice Siemens series); the
# issue's acceptance bounds: 0.90 and 0.85.
REAL_LIVER_DICE = {"abdomen": 0.90, "siemens": 0.85}


def _fetch(pacs: Orthanc, orthanc_id: str, dest: Path) -> Path:
    with urllib.request.urlopen(f"http://127.0.0.1:{pacs.http_port}/instances/{orthanc_id}/file", timeout=10) as r:
        dest.write_bytes(r.read())
    return dest


def _check_seg(stack: Stack, job: Job, pacs: Orthanc, phantom: PhantomFiles, tmp_path: Path) -> dict[int, float]:
    """The SEG is valid, stored in Orthanc, and overlaps the phantom's truth; return Dice per class."""
    seg_path = stack.adapter.root / job.id / "output" / "seg.dcm"
    assert dciodvfy_errors(seg_path) == []
    seg = pydicom.dcmread(seg_path, stop_before_pixels=True)
    orthanc_id = seg_in_orthanc(pacs, str(seg.SeriesInstanceUID))
    tags = pacs.get(f"/instances/{orthanc_id}/simplified-tags")
    assert tags["Modality"] == "SEG" and tags["SOPInstanceUID"] == seg.SOPInstanceUID
    assert tags["StudyInstanceUID"] == phantom.study_uid
    stored = _fetch(pacs, orthanc_id, tmp_path / f"{job.id}-seg.dcm")
    manifest = json.loads((stack.adapter.root / job.id / "payload" / "reader" / "series.json").read_text())
    labels = _seg_labels(stored, manifest["files"])
    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(phantom.ground_truth)))
    # Segment numbers follow the workflow's labels; for both workflows they equal the class indices.
    return {c: dice(labels == c, truth == c) for c in range(1, int(labels.max()) + 1)}


def test_organseg_study_becomes_a_seg_in_orthanc(stacks: Callable[..., Stack], triton: LocalTriton, pacs: Orthanc,
                                                 phantoms: Callable[[int], PhantomFiles], tmp_path: Path) -> None:
    phantom = phantoms(7)
    stack = stacks(triton.ports)
    sent = send(stack.port, phantom.files, "OrganSeg")
    assert sent.returncode == 0, sent.stderr
    job = stack.wait_job(lambda j: j.study_uid == phantom.study_uid, 20, "the study's job")
    job = stack.wait_finished(job.id, 90)
    assert job.state is JobState.DONE, job.error
    assert job.workflow == "OrganSeg" and job.instance_count == len(phantom.files)

    records = stack.stages(job.id)
    assert [(r.stage, r.status) for r in records] == [(s, "succeeded") for s in STAGES]
    for r in records:
        assert r.attempt == 1 and r.duration_s is not None and r.duration_s > 0
        assert r.started_at is not None and r.ended_at is not None and r.ended_at >= r.started_at
    job_dir = stack.adapter.root / job.id
    for stage in ("reader", "inference", "writer"):
        assert (job_dir / "payload" / stage).is_dir()
    assert sorted(p.name for p in (job_dir / "output").iterdir()) == ["seg.dcm"]

    scores = _check_seg(stack, job, pacs, phantom, tmp_path)
    print(f"OrganSeg end-to-end Dice {scores}; stages "
          f"{[(r.stage, round(r.duration_s or 0, 3)) for r in records]}")
    assert all(scores[c] >= bound for c, bound in ORGAN_DICE.items()), scores
    # systemd stop: SIGTERM ends the worker cleanly.
    assert stack.worker.stop() == 0
    assert "stopped" in stack.worker.log()


def _real_ct_liver_dice(stack: Stack, job: Job, pacs: Orthanc, reference: sitk.Image, tmp_path: Path) -> float:
    """The SEG of a real series is valid and stored in Orthanc; its liver Dice against TotalSegmentator's labels."""
    seg_path = stack.adapter.root / job.id / "output" / "seg.dcm"
    assert dciodvfy_errors(seg_path) == []
    seg = pydicom.dcmread(seg_path, stop_before_pixels=True)
    assert "pyliverlesionseg 0.3" in seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0].AlgorithmName
    stored = _fetch(pacs, seg_in_orthanc(pacs, str(seg.SeriesInstanceUID)), tmp_path / f"{job.id}-seg.dcm")
    manifest = json.loads((stack.adapter.root / job.id / "payload" / "reader" / "series.json").read_text())
    labels = scoring.seg_labels(stored, [Path(f) for f in manifest["files"]])
    return scoring.dice_scores(labels, reference, {"liver": ((1,), (testdata.TOTALSEG_LABELS["liver"],))})["liver"]


def test_two_workflows_in_flight_at_once(stacks: Callable[..., Stack], triton: LocalTriton, pacs: Orthanc,
                                         phantoms: Callable[[int], PhantomFiles],
                                         reference_files: testdata.ReferenceFiles, tmp_path: Path) -> None:
    """OrganSeg on the phantom and LiverSeg on the real 20-slice Siemens series (JPEG 2000) at once."""
    organ = phantoms(7)
    liver = testdata.dicom_series(reference_files, tmp_path / "siemens")
    stack = stacks(triton.ports)
    # Both studies arrive together, so both jobs become ready in the same quiet window.
    with ThreadPoolExecutor(2) as pool:
        sent = list(pool.map(lambda item: send(stack.port, item[1], item[0], "STORESCU", "-xv"),
                             (("OrganSeg", list(organ.files)), ("LiverSeg", liver))))
    assert all(s.returncode == 0 for s in sent), [s.stderr for s in sent]
    jobs = {}
    for ae in ("OrganSeg", "LiverSeg"):
        job = stack.wait_job(lambda j, ae=ae: j.called_ae == ae, 20, f"the {ae} job")  # type: ignore[misc]
        jobs[ae] = stack.wait_finished(job.id, 300)
        assert jobs[ae].state is JobState.DONE, jobs[ae].error
        assert jobs[ae].workflow == ae
    spans = {}
    for ae, job in jobs.items():
        records = stack.stages(job.id)
        assert [(r.stage, r.status) for r in records] == [(s, "succeeded") for s in STAGES]
        spans[ae] = (records[0].started_at or 0, records[-1].ended_at or 0)
    # With worker.workers = 2 the two jobs ran side by side, not one after the other.
    (a0, a1), (b0, b1) = spans.values()
    assert a0 < b1 and b0 < a1, spans
    organ_scores = _check_seg(stack, jobs["OrganSeg"], pacs, organ, tmp_path)
    liver_dice = _real_ct_liver_dice(stack, jobs["LiverSeg"], pacs, sitk.ReadImage(str(reference_files.seg_dicom)),
                                     tmp_path)
    print(f"concurrent: OrganSeg Dice {organ_scores} (phantom), LiverSeg liver Dice {liver_dice:.3f} (real CT vs "
          f"TotalSegmentator's predictions), spans {spans}")
    assert all(organ_scores[c] >= bound for c, bound in ORGAN_DICE.items()), organ_scores
    assert liver_dice >= REAL_LIVER_DICE["siemens"], liver_dice
    info = json.loads((stack.adapter.root / jobs["LiverSeg"].id / "payload" / "inference" / "inference.json")
                      .read_text())
    assert info["protocol"] == "grpc" and "gate_wait_s" in info["timings_s"]
    assert np.isfinite(info["timings_s"]["infer_s"])
    assert any("mirrored" in note for note in info["notes"]), info["notes"]


def test_real_abdomen_to_pelvis_liver(stacks: Callable[..., Stack], triton: LocalTriton, pacs: Orthanc,
                                      reference_files: testdata.ReferenceFiles, tmp_path: Path) -> None:
    """TotalSegmentator's example_ct.nii.gz (112 slices of 3 mm) sent as a DICOM series to LiverSeg."""
    series = testdata.nifti_to_dicom(reference_files.ct, tmp_path / "ct")
    stack = stacks(triton.ports)
    sent = send(stack.port, series, "LiverSeg")
    assert sent.returncode == 0, sent.stderr
    job = stack.wait_finished(stack.wait_job(lambda j: j.called_ae == "LiverSeg", 20, "the job").id, 300)
    assert job.state is JobState.DONE, job.error
    # Scored over the 30-slice slab the reference labels cover, placed where it lies in the volume.
    dice_liver = _real_ct_liver_dice(stack, job, pacs, testdata.slab_labels(reference_files), tmp_path)
    print(f"LiverSeg liver Dice {dice_liver:.3f} on example_ct (vs TotalSegmentator's predictions); stages "
          f"{[(r.stage, round(r.duration_s or 0, 2)) for r in stack.stages(job.id)]}")
    assert dice_liver >= REAL_LIVER_DICE["abdomen"], dice_liver
