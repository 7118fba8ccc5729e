"""``python -m appliance.model_repository DEST``: build the model repository into DEST."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from appliance.model_repository import Inputs, build_repository
from appliance.model_repository.sources import SourceError


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, build the repository, print its path; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m appliance.model_repository", description=__doc__)
    parser.add_argument("dest", help="folder to write the repository to (model folders are replaced)")
    parser.add_argument("--backend", choices=("python", "onnxruntime"), default="python",
                        help="python: nvidia-pytriton's tritonserver (default); onnxruntime: Triton containers")
    parser.add_argument("--kind", choices=("cpu", "gpu"), default="cpu", help="instance kind (default cpu)")
    parser.add_argument("--liver-wheel", type=Path,
                        help="the pyliverlesionseg 0.3 wheel (default: pip download it into --cache)")
    parser.add_argument("--cache", type=Path, help="where fetched packages are kept (default ~/.cache/appliance)")
    args = parser.parse_args(argv)
    try:
        print(build_repository(args.dest, backend=args.backend, kind=args.kind,
                               inputs=Inputs(args.liver_wheel, args.cache)))
    except SourceError as exc:
        parser.exit(1, f"cannot build the model repository: {exc}\n"
                       "On a host without PyPI, fetch the wheel elsewhere and pass --liver-wheel FILE.\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
