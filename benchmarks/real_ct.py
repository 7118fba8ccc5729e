"""Real CT through the whole appliance: ``python benchmarks/real_ct.py [--cases ct,dicom]``.

Sends two real CT series (from TotalSegmentator 2.18.0's test files, fetched from PyPI) to the
appliance on loopback, once per workflow, as production does: dcmtk ``storescu`` -> adapter ->
worker (reader, inference on a CPU tritonserver from nvidia-pytriton, SEG writer) -> Orthanc.
Then reads each SEG back and prints, side by side, Dice per organ for

* LiverSeg: the trained liver CNN of pyliverlesionseg 0.3, ported to ONNX;
* OrganSeg: the demo intensity model (synthetic phantom only);

against TotalSegmentator's labels, **which are another model's predictions, not expert ground
truth**, scored in physical space over the region they cover, with the time of each stage.

Cases: ``ct`` is ``example_ct.nii.gz`` (abdomen to pelvis, 3 mm, 112 slices) written as a DICOM
series, scored on the 30-slice slab ``example_seg.nii.gz`` covers; ``dicom`` is the 20-slice
Siemens series ``example_ct_dicom`` (JPEG 2000), scored against ``example_seg_dicom.nii.gz``.
Numbers, not a test: they depend on the machine and its load. Needs dcmtk and Orthanc.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
from e2e.e2ekit import Orthanc, Stack, free_port, stack_config, storescu  # noqa: E402

from appliance.jobs import JobState  # noqa: E402
from appliance.triton_local import LocalTriton  # noqa: E402
from harness import scoring, testdata  # noqa: E402

#: SEG segment numbers -> TotalSegmentator labels (liver 5, spleen 1, kidneys 2 and 3).
ORGANS = {
    "LiverSeg": {"liver": ((1,), (5,))},
    "OrganSeg": {"liver": ((1,), (5,)), "spleen": ((2,), (1,)), "kidneys": ((3,), (2, 3))},
}


def _series(case: str, files: testdata.ReferenceFiles, dest: Path, study: str) -> list[Path]:
    if case == "ct":
        return testdata.nifti_to_dicom(files.ct, dest, study_uid=study)
    return testdata.dicom_series(files, dest, study_uid=study)


def _reference(case: str, files: testdata.ReferenceFiles) -> object:
    import SimpleITK as sitk

    return testdata.slab_labels(files) if case == "ct" else sitk.ReadImage(str(files.seg_dicom))


def run(cases: list[str], workflows: list[str], workdir: Path, threads: int) -> list[dict[str, object]]:
    """Send every case to every workflow; one row per (case, workflow)."""
    files = testdata.reference_files()
    pacs = Orthanc(workdir / "orthanc")
    triton = LocalTriton(workdir=workdir / "triton", liver_wheel=testdata.liver_wheel(),
                         intra_op_threads=threads).start()
    assert triton.ports is not None
    stack = Stack(workdir / "stack", stack_config(workdir / "stack", free_port(), pacs.dicom_port,
                                                  triton.ports)).start()
    rows: list[dict[str, object]] = []
    try:
        for case in cases:
            for workflow in workflows:
                organs = ORGANS[workflow]
                study = f"1.2.826.0.1.3680043.10.511.99.{len(rows) + 1}.{int(time.time())}"
                series = _series(case, files, workdir / f"{case}-{workflow}", study)
                t0 = time.monotonic()
                # -xv: propose JPEG 2000 too, the Siemens series' own encoding.
                sent = storescu(stack.port, series, workflow, "STORESCU", "-xv", timeout=300)
                if sent.returncode != 0:
                    raise SystemExit(f"storescu failed: {sent.stderr}")
                job = stack.wait_job(lambda j, s=study: j.study_uid == s, 60, f"the {case} job")
                job = stack.wait_finished(job.id, 900)
                total = time.monotonic() - t0
                if job.state is not JobState.DONE:
                    raise SystemExit(f"{case} {workflow}: job failed: {job.error}\n{stack.worker.log()[-3000:]}")
                payload = stack.adapter.root / job.id / "payload"
                manifest = json.loads((payload / "reader" / "series.json").read_text())
                info = json.loads((payload / "inference" / "inference.json").read_text())
                labels = scoring.seg_labels(stack.adapter.root / job.id / "output" / "seg.dcm",
                                            [Path(f) for f in manifest["files"]])
                dice = scoring.dice_scores(labels, _reference(case, files), organs)  # type: ignore[arg-type]
                stages = {r.stage: round(r.duration_s or 0.0, 2) for r in stack.stages(job.id)}
                rows.append({"case": case, "workflow": workflow, "instances": len(series), "dice": dice,
                             "stages_s": stages, "inference_s": info["timings_s"], "notes": info.get("notes", []),
                             "send_to_done_s": round(total, 1)})
    finally:
        stack.kill()
        triton.stop()
        pacs.stop()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default="ct,dicom", help="comma-separated: ct, dicom (default both)")
    parser.add_argument("--workflows", default="LiverSeg,OrganSeg", help="comma-separated (default both)")
    parser.add_argument("--threads", type=int, default=0, help="onnxruntime threads per model (0: all cores)")
    parser.add_argument("--json", action="store_true", help="also print the rows as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="real-ct-") as tmp:
        rows = run(args.cases.split(","), args.workflows.split(","), Path(tmp), args.threads)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; reference: TotalSegmentator 2.18.0 "
          "labels (model predictions, not expert ground truth)")
    print(f"{'case':<6} {'workflow':<9} {'liver':>6} {'spleen':>6} {'kidneys':>7}   stages (s)")
    for row in rows:
        dice: dict[str, float] = row["dice"]  # type: ignore[assignment]
        cells = [f"{dice[k]:.3f}" if k in dice else "-" for k in ("liver", "spleen", "kidneys")]
        stages = " ".join(f"{k} {v}" for k, v in row["stages_s"].items())  # type: ignore[attr-defined]
        print(f"{row['case']:<6} {row['workflow']:<9} {cells[0]:>6} {cells[1]:>6} {cells[2]:>7}   {stages}"
              f"   (send -> done {row['send_to_done_s']} s)")
        print(f"{'':<17}inference: {row['inference_s']}")
        for note in row["notes"]:  # type: ignore[attr-defined]
            print(f"{'':<17}note: {note}")
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
