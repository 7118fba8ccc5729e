"""The memory a job needs from its series' size, and what the host offers (cgroup limit included)."""

from __future__ import annotations

from pathlib import Path

from appliance.pipeline import memory


def test_job_memory_and_largest_series_agree() -> None:
    slices_2000 = 2000 * 512 * 512
    assert memory.job_memory_mb(slices_2000) == 3400
    assert memory.max_voxels(3400) == slices_2000
    assert memory.max_voxels(memory.BASE_MB - 1) == 0


def test_host_memory_takes_the_lower_of_host_and_cgroup(tmp_path: Path) -> None:
    meminfo = 16000 * 2**20
    cgroup = tmp_path / "memory.max"
    assert memory.host_memory_mb(meminfo, cgroup) == 16000
    cgroup.write_text("max\n")
    assert memory.host_memory_mb(meminfo, cgroup) == 16000
    cgroup.write_text(f"{4 << 30}\n")
    assert memory.host_memory_mb(meminfo, cgroup) == 4096


def test_host_memory_needs_no_proc() -> None:
    # The worker's unit runs with ProcSubset=pid: /proc/meminfo is not there.
    assert memory.host_memory_mb(cgroup=Path("/nonexistent")) > 0
