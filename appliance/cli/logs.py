"""Logging of the foreground services (``appliance adapter``, ``worker``, ``exporter``): stdout, for journald."""

from __future__ import annotations

import logging
import sys

#: Choices of the services' ``--log-level`` option.
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def configure(level: str) -> None:
    """One line per event on stdout; journald adds its own timestamps, ours serve runs outside systemd."""
    logging.basicConfig(stream=sys.stdout, level=getattr(logging, level),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # pynetdicom logs every PDU at INFO; the services log what matters themselves.
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
