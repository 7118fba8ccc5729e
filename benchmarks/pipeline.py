"""Time the pipeline stages on a phantom: ``python benchmarks/pipeline.py [--size 512 --slices 200]``.

Starts the local tritonserver (nvidia-pytriton) unless ``--url`` points at a running one,
writes a phantom, then runs reader -> inference -> writer through the stage runner and
prints one JSON object: stage durations (s), inference sub-timings, and the SEG's Dice
against the phantom's ground truth.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from appliance.phantom import PhantomSpec, write_phantom
from appliance.pipeline import StageContext, default_stages, run_stages
from appliance.triton_local import LocalTriton
from appliance.workflows import TritonSettings, shipped_workflows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512, help="rows/columns (default 512)")
    parser.add_argument("--slices", type=int, default=200, help="slices (default 200)")
    parser.add_argument("--workflow", default="OrganSeg", choices=("OrganSeg", "LiverSeg"))
    parser.add_argument("--protocol", default="http", choices=("http", "grpc"))
    parser.add_argument("--shared-memory", default="auto", choices=("auto", "system", "off"))
    parser.add_argument("--url", help="use this running server instead of starting one")
    args = parser.parse_args()
    workflow = shipped_workflows()[args.workflow]
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        job = Path(tmp) / "job"
        t0 = time.perf_counter()
        phantom = write_phantom(job / "input", PhantomSpec(size=args.size, slices=args.slices))
        phantom_s = time.perf_counter() - t0
        server = None if args.url else LocalTriton(workdir=Path(tmp) / "triton").start()
        try:
            url = args.url or (server.http_url if args.protocol == "http" else server.grpc_url)  # type: ignore[union-attr]
            triton = TritonSettings(url=url, protocol=args.protocol, shared_memory=args.shared_memory)
            result = run_stages(default_stages(workflow, triton), StageContext(job, workflow))
        finally:
            if server is not None:
                server.stop()
        report: dict[str, object] = {
            "volume": [args.size, args.size, args.slices], "workflow": args.workflow, "protocol": args.protocol,
            "phantom_s": round(phantom_s, 3),
            "stages": {r.stage: {"duration_s": round(r.duration_s, 3), "outcome": r.outcome, "error": r.error}
                       for r in result.records},
        }
        info = job / "payload" / "inference" / "inference.json"
        if info.is_file():
            report["inference"] = json.loads(info.read_text())
        if result.succeeded:
            truth = sitk.GetArrayFromImage(sitk.ReadImage(str(phantom.ground_truth)))
            labels = sitk.GetArrayFromImage(sitk.ReadImage(str(result.artifacts["labels"])))
            report["dice"] = {label.name: round(float(2 * ((labels == label.class_index) & (truth == label.class_index))
                                                      .sum() / ((labels == label.class_index).sum()
                                                                + (truth == label.class_index).sum())), 4)
                              for label in workflow.labels}
            report["seg_bytes"] = result.artifacts["seg"].stat().st_size
        print(json.dumps(report, indent=2))
    return 0 if result.succeeded else 1


if __name__ == "__main__":
    np.seterr(all="ignore")
    raise SystemExit(main())
