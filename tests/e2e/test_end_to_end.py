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
from pipeline.test_inference import LIVER_DICE, ORGAN_DICE
from pipeline.test_writer import _seg_labels

from appliance.jobs import Job, JobState
from appliance.phantom import PhantomFiles
from appliance.triton_local import LocalTriton

from .e2ekit import Orthanc, Stack, seg_in_orthanc
from .e2ekit import storescu as send

STAGES = ["reader", "inference", "writer", "export"]


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


def test_two_workflows_in_flight_at_once(stacks: Callable[..., Stack], triton: LocalTriton, pacs: Orthanc,
                                         phantoms: Callable[[int], PhantomFiles], tmp_path: Path) -> None:
    organ, liver = phantoms(7), phantoms(8)
    stack = stacks(triton.ports)
    # Both studies arrive together, so both jobs become ready in the same quiet window.
    with ThreadPoolExecutor(2) as pool:
        sent = list(pool.map(lambda item: send(stack.port, item[1].files, item[0]),
                             (("OrganSeg", organ), ("LiverSeg", liver))))
    assert all(s.returncode == 0 for s in sent), [s.stderr for s in sent]
    jobs = {}
    for ae in ("OrganSeg", "LiverSeg"):
        job = stack.wait_job(lambda j, ae=ae: j.called_ae == ae, 20, f"the {ae} job")  # type: ignore[misc]
        jobs[ae] = stack.wait_finished(job.id, 120)
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
    liver_scores = _check_seg(stack, jobs["LiverSeg"], pacs, liver, tmp_path)
    print(f"concurrent: OrganSeg Dice {organ_scores}, LiverSeg Dice {liver_scores}, spans {spans}")
    assert all(organ_scores[c] >= bound for c, bound in ORGAN_DICE.items()), organ_scores
    assert liver_scores[1] >= LIVER_DICE, liver_scores
    info = json.loads((stack.adapter.root / jobs["LiverSeg"].id / "payload" / "inference" / "inference.json")
                      .read_text())
    assert info["protocol"] == "grpc" and "gate_wait_s" in info["timings_s"]
    assert np.isfinite(info["timings_s"]["infer_s"])
