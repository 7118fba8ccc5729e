"""``appliance adapter --config PATH``: run the DICOM adapter in the foreground (systemd-friendly)."""

from __future__ import annotations

import argparse
import sys

from appliance.cli import logs
from appliance.config import ConfigError, load


def _run(args: argparse.Namespace) -> int:
    logs.configure(args.log_level)
    try:
        config = load(args.config)
    except ConfigError as exc:
        print(f"appliance adapter: {exc}", file=sys.stderr)
        return 2
    from appliance.adapter.service import Adapter
    from appliance.systemd import on_stop_signals

    adapter = Adapter(config)
    on_stop_signals(adapter.request_stop)
    return adapter.run()


def _check(args: argparse.Namespace) -> int:
    try:
        load(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"{args.config}: OK")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``adapter`` sub-command (``--check`` only validates the configuration)."""
    p = sub.add_parser("adapter", help="run the DICOM adapter in the foreground")
    p.add_argument("--config", required=True, help="YAML configuration file")
    p.add_argument("--log-level", default="INFO", choices=logs.LEVELS)
    p.add_argument("--check", action="store_true", help="validate the configuration and exit")
    p.set_defaults(func=lambda a: _check(a) if a.check else _run(a))
