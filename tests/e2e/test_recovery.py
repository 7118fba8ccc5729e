"""A worker killed mid-job: at restart the job is resumed (or failed, by policy), never left ``running``."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest

from appliance.jobs import JobState
from appliance.phantom import PhantomFiles
from appliance.triton_local import LocalTriton

from .e2ekit import APPLIANCE, Stack
from .e2ekit import storescu as send


def _kill_mid_job(stack: Stack, phantom: PhantomFiles) -> str:
    sent = send(stack.port, phantom.files, "OrganSeg")
    assert sent.returncode == 0, sent.stderr
    job = stack.wait_job(lambda j: j.state is JobState.RUNNING, 30, "a running job", interval=0.01)
    stack.worker.kill()  # SIGKILL: no cleanup of any kind
    assert stack.job(job.id).state is JobState.RUNNING  # what the crash left behind
    return job.id


@pytest.mark.parametrize("policy", ["resume", "fail"])
def test_worker_killed_mid_job(policy: str, stacks: Callable[..., Stack], triton: LocalTriton,
                               phantoms: Callable[[int], PhantomFiles]) -> None:
    worker_keys = {"max_resumes": 2} if policy == "resume" else {"interrupted": "fail"}
    stack = stacks(triton.ports, **worker_keys)
    job_id = _kill_mid_job(stack, phantoms(7))
    stack.worker.start()
    job = stack.wait_finished(job_id, 60)
    records = stack.stages(job_id)
    assert all(r.status != "running" for r in records), records
    if policy == "resume":
        assert job.state is JobState.DONE and job.resumes == 1, job
        assert "interrupted by a worker crash or restart; resuming" in stack.worker.log()
        assert [r.stage for r in records if r.status == "succeeded"][-4:] == ["reader", "inference", "writer",
                                                                               "export"]
    else:
        assert job.state is JobState.FAILED and job.failed_phase == "pipeline"
        assert job.error is not None and "by a worker crash or restart; not resumed" in job.error, job.error
        # ... and the operator can still run it again.
        assert "ready (attempt 2)" in stack.adapter.cli("retry", job_id).stdout
        assert stack.wait_finished(job_id, 60).state is JobState.DONE


def test_one_worker_per_job_store(stacks: Callable[..., Stack], triton: LocalTriton) -> None:
    """A second worker on the same job store exits 1 at once: start-up recovery relies on being alone."""
    stack = stacks(triton.ports)
    done = subprocess.run([str(APPLIANCE), "worker", "--config", str(stack.worker.config_path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "another appliance worker uses this job store" in done.stdout + done.stderr
