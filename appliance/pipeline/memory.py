"""Memory a job needs in the worker, from the size of its study, and what the host has.

A job's peak working set is a fixed part (the interpreter and its libraries, the model grid, the
SEG's headers) plus a part per voxel of the series' image grid. Per voxel, at the worst moment
of each stage: the reader holds the int16 volume it decodes into and SimpleITK's copy of it (4 B);
the inference stage the int16 volume, the uint8 labels and their image (4 B; the class
probabilities stay on the coarse model grid and go back in slabs, never as a float volume per
class); the writer the labels, their segment numbers and highdicom's frames (up to 6 B). No
stage holds a float copy of the whole volume. :data:`BYTES_PER_VOXEL` and :data:`BASE_MB` are
those figures rounded up, checked against ``benchmarks/pipeline.py`` (peak RSS of the worker).

The worker sizes itself with ``worker.memory-per-job-mb``: the reader refuses a series larger than
that allows (:func:`max_voxels`), and the worker refuses to start when ``worker.workers`` jobs of
that size do not fit in the host's memory (:func:`host_memory_mb`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

BASE_MB = 400
"""Fixed part of one job, and of the worker process itself, in MB."""
BYTES_PER_VOXEL = 6
"""Peak bytes per voxel of the image grid while a job runs (see the module's docstring)."""


def job_memory_mb(voxels: int) -> int:
    """MB a job on a series of ``voxels`` image voxels needs at its peak."""
    return BASE_MB + math.ceil(voxels * BYTES_PER_VOXEL / 2**20)


def max_voxels(memory_mb: int) -> int:
    """The largest series (image voxels) a job fits in ``memory_mb``; 0 if not even the fixed part fits."""
    return max(0, (memory_mb - BASE_MB) * 2**20 // BYTES_PER_VOXEL)


def host_memory_mb(total_bytes: int | None = None, cgroup: Path = Path("/sys/fs/cgroup/memory.max")) -> int:
    """The memory this process may use, in MB: the host's total (``total_bytes``; default the
    kernel's physical page count, which needs no /proc: the worker's unit hides /proc/meminfo
    with ``ProcSubset=pid``), or its cgroup's limit where lower."""
    if total_bytes is None:
        total_bytes = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    limit = total_bytes // 2**20
    try:
        value = cgroup.read_text().strip()
    except OSError:
        return limit
    return min(limit, int(value) // 2**20) if value.isdigit() else limit
