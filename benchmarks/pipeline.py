"""End-to-end timing of one study: ``python benchmarks/pipeline.py [--size 512 --slices 200]``.

Runs the whole appliance on loopback, as in production but on one machine: dcmtk ``storescu``
sends a phantom CT study to ``appliance adapter``; after the quiet window the job is ready,
``appliance worker`` runs reader -> inference (a real tritonserver from nvidia-pytriton) ->
writer -> export, and ``appliance exporter`` sends the SEG to Orthanc. Prints each stage's time
(from the job store), the quiet window, the pure inference time, and the end-to-end time from
the last instance received to the SEG stored in Orthanc, so that

    orchestration overhead = end-to-end - quiet window - stage compute time

(claiming, bookkeeping, exporter pick-up, the C-STORE to Orthanc) is visible.

Each stage is printed next to a floor measured in the same run, after the stack has stopped: the
reader next to SimpleITK's series read of the same files, the inference stage next to the bare model
call on Triton (its own ``infer_s``), the writer next to highdicom's SEG construction alone for the
job's labels; then the ratio. Peak RSS (``VmHWM``) of the adapter, the worker and the Triton
process tree (summed over its processes: an upper bound of their joint peak) is read just before
they stop. ``--slices 2000`` is the large-study run. Numbers, not a test: they depend on the machine
and what else runs (the load average is printed). Needs dcmtk and Orthanc.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
from e2e.e2ekit import Orthanc, Stack, free_port, seg_in_orthanc, stack_config, storescu  # noqa: E402

from appliance.jobs import Job, JobState, JobStore  # noqa: E402
from appliance.phantom import PhantomSpec, write_phantom  # noqa: E402
from appliance.pipeline.writer import build_seg, segment_numbers, source_frames  # noqa: E402
from appliance.settings.workflow import Workflow  # noqa: E402
from appliance.triton_local import LocalTriton  # noqa: E402
from appliance.workflows import shipped_workflows  # noqa: E402


def _dice(labels_path: Path, truth_path: Path, classes: list[int]) -> dict[int, float]:
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(labels_path)))
    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(truth_path)))
    return {c: round(float(2 * ((labels == c) & (truth == c)).sum() / ((labels == c).sum() + (truth == c).sum())), 4)
            for c in classes}


def _finished(stack: Stack, study_uid: str, timeout: float) -> Job:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = next((j for j in stack.jobs() if j.study_uid == study_uid), None)
        if job is not None and job.state in (JobState.DONE, JobState.FAILED):
            return job
        time.sleep(0.01)
    raise SystemExit(f"no finished job after {timeout} s\n{stack.worker.log()[-3000:]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512, help="rows/columns (default 512)")
    parser.add_argument("--slices", type=int, default=200, help="slices (default 200)")
    parser.add_argument("--workflow", default="OrganSeg", choices=("OrganSeg", "LiverSeg"))
    parser.add_argument("--quiet-seconds", type=float, default=1.0, help="completion.quiet-seconds (default 1)")
    parser.add_argument("--json", action="store_true", help="also print everything as one JSON object")
    args = parser.parse_args()
    workflow = shipped_workflows()[args.workflow]
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp_name:
        tmp = Path(tmp_name)
        phantom = write_phantom(tmp / "phantom", PhantomSpec(size=args.size, slices=args.slices))
        pacs = Orthanc(tmp / "orthanc")
        triton = LocalTriton(workdir=tmp / "triton").start()
        assert triton.ports is not None
        config = stack_config(tmp / "stack", free_port(), pacs.dicom_port, triton.ports,
                              {args.workflow: args.workflow})
        config["completion"]["quiet-seconds"] = args.quiet_seconds
        stack = Stack(tmp / "stack", config).start()
        try:
            t0 = time.time()
            sent = storescu(stack.port, phantom.files, args.workflow, timeout=300)
            send_s = time.time() - t0
            if sent.returncode != 0:
                raise SystemExit(f"storescu failed: {sent.stderr}")
            job = _finished(stack, phantom.study_uid, 600)
            if job.state is not JobState.DONE:
                raise SystemExit(f"job failed: {job.error}")
            with JobStore(stack.database) as store:
                stages = store.stages(job.id)
                exports = store.exports(job.id)
            seg_series = json.loads((stack.adapter.root / job.id / "payload" / "reader" / "series.json").read_text())
            info = json.loads((stack.adapter.root / job.id / "payload" / "inference" / "inference.json").read_text())
            orthanc_id = seg_in_orthanc(pacs, _seg_series_uid(stack, job))
            rss = {"adapter": _peak_rss_mb(stack.adapter.proc), "worker": _peak_rss_mb(stack.worker.proc),
                   "Triton (server + backend stubs)": _peak_rss_mb(triton.process, tree=True)}
            dice = _dice(stack.adapter.root / job.id / "payload" / "inference" / "labels.mha", phantom.ground_truth,
                         [label.class_index for label in workflow.labels])
        finally:
            stack.kill()
            triton.stop()
            pacs.stop()
        payload = stack.adapter.root / job.id / "payload"
        floors = {"reader": _timed(lambda: _sitk_series(phantom.files)),
                  "writer": _timed(lambda: _seg_alone(payload, workflow))}
    assert job.last_instance_at is not None and job.ready_at is not None
    stored_at = max(e.at for e in exports if e.outcome == "sent")
    first_start = min(s.started_at or 0 for s in stages)
    last_end = max(s.ended_at or 0 for s in stages)
    compute = sum(s.duration_s or 0 for s in stages)
    inference_stage = next(s.duration_s or 0 for s in stages if s.stage == "inference")
    end_to_end = stored_at - job.last_instance_at
    quiet = job.ready_at - job.last_instance_at
    numbers = {
        "volume": f"{args.size}x{args.size}x{args.slices} ({len(seg_series['files'])} instances), {args.workflow}",
        "storescu send (s)": send_s,
        **{f"stage {s.stage} (s)": s.duration_s or 0 for s in stages},
        "  inference: model call on Triton (s)": info["timings_s"]["infer_s"],
        "  inference: pre/post-processing (s)": info["timings_s"]["preprocess_s"] + info["timings_s"]["postprocess_s"],
        "quiet window, configured (s)": args.quiet_seconds,
        "quiet window, measured: last instance -> ready (s)": quiet,
        "ready -> first stage started (s)": first_start - job.ready_at,
        "last stage ended -> SEG stored in Orthanc (s)": stored_at - last_end,
        "END-TO-END: last instance received -> SEG stored in Orthanc (s)": end_to_end,
        "end-to-end - quiet - inference stage (s)": end_to_end - quiet - inference_stage,
        "ORCHESTRATION OVERHEAD: end-to-end - quiet - all stage compute (s)": end_to_end - quiet - compute,
    }
    floors["inference"] = info["timings_s"]["infer_s"]
    for stage, floor in floors.items():
        seconds = next(s.duration_s or 0 for s in stages if s.stage == stage)
        numbers[f"{stage}: stage / floor ({_FLOOR_NAMES[stage]} {floor:.3f} s)"] = seconds / floor
    numbers["reader + inference + writer (s)"] = sum(s.duration_s or 0 for s in stages if s.stage in floors)
    for name, mb in rss.items():
        numbers[f"peak RSS, {name} (MB)"] = mb
    numbers["load average (1, 5, 15 min) at the end"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    width = max(map(len, numbers))
    for key, value in numbers.items():
        print(f"{key:<{width}}  {value:.3f}" if isinstance(value, float) else f"{key:<{width}}  {value}")
    print(f"{'Dice vs phantom truth':<{width}}  {dice}   (Orthanc instance {orthanc_id})")
    if args.json:
        print(json.dumps({**numbers, "dice": dice, "inference": info}, indent=2))
    return 0


_FLOOR_NAMES = {"reader": "SimpleITK series read", "inference": "bare model call",
                "writer": "highdicom SEG alone"}


def _timed(work: Callable[[], object]) -> float:
    t = time.perf_counter()
    work()
    return time.perf_counter() - t


def _sitk_series(files: Sequence[Path]) -> None:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(files[0].parent)))
    reader.Execute()


def _seg_alone(payload: Path, workflow: Workflow) -> None:
    """highdicom's Segmentation built for the job's labels and source headers, nothing else timed
    apart from the headers' read (the SEG needs them)."""
    info = json.loads((payload / "reader" / "series.json").read_text())
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(payload / "inference" / "labels.mha")))
    sources, frames = source_frames(info, segment_numbers(labels, workflow))
    build_seg(sources, frames, workflow)


def _peak_rss_mb(process: subprocess.Popen[bytes] | None, tree: bool = False) -> float:
    """Peak resident set (VmHWM) of ``process`` in MB; with ``tree``, summed over it and its descendants."""
    if process is None:
        return float("nan")
    pids = [process.pid]
    if tree:
        children: dict[int, list[int]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        for pid in pids:
            pids.extend(children.get(pid, []))
    total = 0.0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        total += next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")), 0) / 1024
    return total


def _seg_series_uid(stack: Stack, job: Job) -> str:
    import pydicom

    seg = pydicom.dcmread(stack.adapter.root / job.id / "output" / "seg.dcm", stop_before_pixels=True)
    return str(seg.SeriesInstanceUID)


if __name__ == "__main__":
    np.seterr(all="ignore")
    raise SystemExit(main())
