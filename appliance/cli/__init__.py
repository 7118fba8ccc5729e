"""Thin command-line front end: ``appliance <command> ...``.

Each sub-command lives in its own module under :mod:`appliance.cli` and exposes
``register(subparsers)``; the library code it calls lives elsewhere in the package.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from appliance import __version__
from appliance.cli import adapter, dashboard, exporter, info, jobs, models, phantom, worker, workflows

# One line per sub-command module; each adds its parser(s) and sets ``func``.
_COMMANDS: tuple[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None], ...] = (
    info.register,
    adapter.register,
    worker.register,
    exporter.register,
    dashboard.register,
    jobs.register,
    phantom.register,
    workflows.register,
    models.register,
)


def build_parser() -> argparse.ArgumentParser:
    """Return the top-level parser with every sub-command registered."""
    parser = argparse.ArgumentParser(
        prog="appliance",
        description="GPU medical-imaging appliance: DICOM adapter, pipeline worker, exporter, dashboard, jobs "
                    "and workflows.",
    )
    parser.add_argument("--version", action="version", version=f"appliance {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for register in _COMMANDS:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``appliance`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    return func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
