"""Faults fail the job with a clear reason, the worker keeps serving, ``appliance jobs retry`` re-runs it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pydicom

from appliance.jobs import JobState
from appliance.phantom import PhantomFiles
from appliance.triton_local import LocalTriton
from appliance.workflows import shipped_workflows

from .e2ekit import Orthanc, Stack, seg_in_orthanc
from .e2ekit import storescu as send


def _send_and_finish(stack: Stack, files: tuple[Path, ...] | list[Path], ae: str, study_uid: str) -> str:
    sent = send(stack.port, files, ae)
    assert sent.returncode == 0, sent.stderr
    return stack.wait_job(lambda j: j.study_uid == study_uid and j.called_ae == ae, 20, f"{ae} job").id


def test_triton_down_then_retry_completes(stacks: Callable[..., Stack], idle_triton: LocalTriton, pacs: Orthanc,
                                          phantoms: Callable[[int], PhantomFiles]) -> None:
    phantom = phantoms(7)
    assert idle_triton.fixed_ports is not None
    stack = stacks(idle_triton.fixed_ports)
    job_id = _send_and_finish(stack, phantom.files, "OrganSeg", phantom.study_uid)
    job = stack.wait_finished(job_id, 60)
    assert job.state is JobState.FAILED and job.failed_phase == "pipeline"
    assert job.error is not None and job.error.startswith("inference: ServerUnavailableError: ")
    assert "is not reachable" in job.error
    assert [(r.stage, r.status) for r in stack.stages(job_id)] == [("reader", "succeeded"), ("inference", "failed")]
    shown = stack.adapter.cli("show", job_id).stdout
    assert "inference failed" in shown and "ServerUnavailableError" in shown

    idle_triton.start()  # the fault is fixed
    retried = stack.adapter.cli("retry", job_id)
    assert "ready (attempt 2)" in retried.stdout
    job = stack.wait_finished(job_id, 60)
    assert job.state is JobState.DONE, job.error
    assert job.attempt == 2 and job.error is None
    second = [(r.stage, r.status) for r in stack.stages(job_id) if r.attempt == 2]
    assert second == [(s, "succeeded") for s in ("reader", "inference", "writer", "export")]
    seg = pydicom.dcmread(stack.adapter.root / job_id / "output" / "seg.dcm", stop_before_pixels=True)
    seg_in_orthanc(pacs, str(seg.SeriesInstanceUID))


def _liver_variant(name: str, model: str, folder: Path) -> None:
    """A copy of the shipped LiverSeg workflow under another name, running another model."""
    source = shipped_workflows()["LiverSeg"].source
    assert source is not None
    text = Path(source).read_text().replace("name: LiverSeg", f"name: {name}", 1)
    (folder / f"{name}.yaml").write_text(text.replace("name: liver_seg_ct", f"name: {model}"))


def test_model_missing_wrong_shape_corrupt_series(stacks: Callable[..., Stack], triton: LocalTriton,
                                                  phantoms: Callable[[int], PhantomFiles], tmp_path: Path) -> None:
    workflows = tmp_path / "workflows"
    workflows.mkdir()
    _liver_variant("MissingModel", "spleen_seg_ct", workflows)  # not in the repository
    _liver_variant("WrongShape", "organ_seg_ct", workflows)  # 4 classes; the workflow says 2
    ae_workflows = {"OrganSeg": "OrganSeg", "NOMODEL": "MissingModel", "BADSHAPE": "WrongShape"}
    stack = stacks(triton.ports, ae_workflows, workflows_dir=str(workflows))

    good, broken = phantoms(7), phantoms(9)
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    for path in broken.files:
        ds = pydicom.dcmread(path)
        if ds.InstanceNumber == 10:
            del ds.ImagePositionPatient  # the reader cannot place this slice
        ds.save_as(corrupt / path.name)

    failing = {
        _send_and_finish(stack, good.files, "NOMODEL", good.study_uid): "inference: ModelNotFoundError: ",
        _send_and_finish(stack, good.files, "BADSHAPE", good.study_uid): "inference: ShapeMismatchError: ",
        _send_and_finish(stack, sorted(corrupt.iterdir()), "OrganSeg", broken.study_uid):
            "reader: CorruptSeriesError: ",
    }
    # Sent last, served although every job before it failed.
    healthy = _send_and_finish(stack, good.files, "OrganSeg", good.study_uid)
    for job_id, reason in failing.items():
        job = stack.wait_finished(job_id, 60)
        assert job.state is JobState.FAILED and job.failed_phase == "pipeline", job
        assert job.error is not None and job.error.startswith(reason), job.error
        print(f"{job.workflow}: {job.error}")
    assert "spleen_seg_ct" in (stack.job(next(iter(failing))).error or "")
    assert stack.wait_finished(healthy, 60).state is JobState.DONE
    assert stack.worker.proc is not None and stack.worker.proc.poll() is None
