"""``appliance adapter --config PATH``: run the DICOM adapter in the foreground (systemd-friendly)."""

from __future__ import annotations

import argparse
import logging
import sys

from appliance.config import ConfigError, load


def _run(args: argparse.Namespace) -> int:
    # Logs go to stdout, one line per event, for journald; timestamps come from journald,
    # but keep ours for runs outside systemd.
    logging.basicConfig(
        stream=sys.stdout,
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # pynetdicom logs every PDU at INFO; the adapter logs what matters itself.
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    try:
        config = load(args.config)
    except ConfigError as exc:
        print(f"appliance adapter: {exc}", file=sys.stderr)
        return 2
    from appliance.adapter.service import Adapter, install_signal_handlers

    adapter = Adapter(config)
    install_signal_handlers(adapter)
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
    p.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    p.add_argument("--check", action="store_true", help="validate the configuration and exit")
    p.set_defaults(func=lambda a: _check(a) if a.check else _run(a))
