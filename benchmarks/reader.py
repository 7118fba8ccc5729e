"""Reader timing per transfer syntax: ``python benchmarks/reader.py [--size 512 --slices 200 --runs 3]``.

Writes a phantom CT series, re-encodes it in a few common syntaxes (harness/encode.py), and times
the appliance's reader building the HU volume (``geometry.build_volume``: headers, decode, sort,
rescale to int16, as the reader stage does) and the whole reader stage (``reader.read_series``: series
scan, volume, MHD file, manifest) next to SimpleITK's ImageSeriesReader (GDCM) on the same files,
the peer a newcomer would reach for. Medians of ``--runs`` runs, seconds. Numbers, not a test: they
depend on the machine and on what else runs. Needs dcmtk for the JPEG re-encodings.
"""

# SimpleITK ships py.typed but its SWIG bindings have no annotations: allow calling them.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from pydicom import uid

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from appliance.phantom import PhantomSpec, write_phantom  # noqa: E402
from appliance.pipeline.geometry import build_volume  # noqa: E402
from appliance.pipeline.reader import read_series  # noqa: E402
from appliance.settings.workflow import ReaderSettings  # noqa: E402
from harness.encode import ENCODINGS, encode_study  # noqa: E402

SYNTAXES = (uid.ExplicitVRLittleEndian, uid.JPEGLosslessSV1, uid.JPEGLSLossless, uid.JPEG2000Lossless,
            uid.RLELossless)


def _median(runs: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        work()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _peer(files: list[Path]) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(p) for p in sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(files[0].parent))])
    image: sitk.Image = reader.Execute()
    return image


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512, help="rows/columns (default 512)")
    parser.add_argument("--slices", type=int, default=200, help="slices (default 200)")
    parser.add_argument("--runs", type=int, default=3, help="runs per measurement (default 3)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="reader-bench-") as tmp:
        phantom = write_phantom(Path(tmp) / "phantom", PhantomSpec(size=args.size, slices=args.slices,
                                                                   bits_stored=12))
        print(f"{args.slices} slices of {args.size}x{args.size}, median of {args.runs} runs, "
              f"load average {os.getloadavg()[0]:.1f}")
        width = max(len(s.name) for s in SYNTAXES)
        print(f"{'transfer syntax':<{width}} {'volume':>9} {'stage':>9} {'SimpleITK':>9} {'volume/SimpleITK':>16}")
        for encoding in (e for e in ENCODINGS if e.syntax in SYNTAXES):
            _, files = encode_study(phantom.files, encoding, Path(tmp) / encoding.syntax)
            ours = _median(args.runs, lambda files=files: build_volume(files, np.int16))
            stage = _median(args.runs, lambda files=files: read_series(files[0].parent, ReaderSettings(),
                                                                       Path(tmp) / "out"))
            try:
                seconds = _median(args.runs, lambda files=files: _peer(files))
                peer, ratio = f"{seconds:9.2f}", f"{ours / seconds:16.2f}"
            except RuntimeError:  # GDCM in SimpleITK lacks some codecs
                peer, ratio = f"{'n/a':>9}", f"{'':>16}"
            print(f"{encoding.syntax.name:<{width}} {ours:9.2f} {stage:9.2f} {peer} {ratio}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
