"""``appliance phantom OUTDIR``: write a synthetic abdominal CT series and its ground truth."""

from __future__ import annotations

import argparse

from appliance.phantom import LABELS, PhantomSpec, write_phantom


def _run(args: argparse.Namespace) -> int:
    spec = PhantomSpec(size=args.size, slices=args.slices, noise_hu=args.noise, seed=args.seed,
                       plane=args.plane, patient_position=args.position, tilt_deg=args.tilt,
                       multiframe=args.multiframe)
    files = write_phantom(args.outdir, spec)
    print(f"series:       {files.series_dir} ({len(files.files)} instances, {spec.size}x{spec.size})")
    print(f"ground truth: {files.ground_truth} (labels {', '.join(f'{k}={v}' for k, v in LABELS.items())})")
    print(f"series uid:   {files.series_uid}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``phantom`` sub-command."""
    p = sub.add_parser("phantom", help="write a synthetic abdominal CT series with known organ labels",
                       description=__doc__)
    p.add_argument("outdir", help="output folder: series/ (DICOM), ground_truth.nii.gz, labels.json")
    p.add_argument("--slices", type=int, default=40, help="number of slices over 200 mm (default 40)")
    p.add_argument("--size", type=int, default=128, help="rows and columns over a 400 mm field (default 128)")
    p.add_argument("--noise", type=float, default=10.0, help="noise standard deviation in HU (default 10)")
    p.add_argument("--seed", type=int, default=7, help="seed for noise and UIDs (default 7)")
    p.add_argument("--plane", choices=("axial", "coronal", "sagittal"), default="axial",
                   help="image plane (default axial)")
    p.add_argument("--position", choices=("HFS", "FFS", "HFP", "FFP"), default="HFS",
                   help="patient position, axial only (default HFS: head first, supine)")
    p.add_argument("--tilt", type=float, default=0.0, help="gantry tilt in degrees (default 0)")
    p.add_argument("--multiframe", action="store_true",
                   help="one Legacy Converted Enhanced CT instance instead of one file per slice")
    p.set_defaults(func=_run)
