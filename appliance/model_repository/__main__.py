"""``python -m appliance.model_repository DEST``: build the model repository into DEST."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from appliance.model_repository import build_repository


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, build the repository, print its path; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m appliance.model_repository", description=__doc__)
    parser.add_argument("dest", help="folder to write the repository to (model folders are replaced)")
    parser.add_argument("--backend", choices=("python", "onnxruntime"), default="python",
                        help="python: nvidia-pytriton's tritonserver (default); onnxruntime: Triton containers")
    parser.add_argument("--kind", choices=("cpu", "gpu"), default="cpu", help="instance kind (default cpu)")
    args = parser.parse_args(argv)
    print(build_repository(args.dest, backend=args.backend, kind=args.kind))
    return 0


if __name__ == "__main__":
    sys.exit(main())
