"""``appliance exporter --config PATH``: run the exporter in the foreground (systemd-friendly).

Sends the results of ``exporting`` jobs to their destinations (``dicom.scu``, retries from
``export:``). Exit status 2: the configuration is invalid (TLS files included); 1: another
exporter already uses the job store, or the export loop died.
"""

from __future__ import annotations

import argparse
import functools

from appliance.cli.service import Runnable, Service, load_checked
from appliance.settings import AdapterConfig


def _build(config: AdapterConfig) -> Runnable:
    from appliance.exporter.service import Exporter

    return Exporter(config)


def _checked(config: AdapterConfig) -> str:
    return "(destinations: " + (", ".join(d.name for d in config.dicom.scu.destinations) or "none") + ")"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``exporter`` sub-command (``--check`` only validates the configuration)."""
    load = functools.partial(load_checked, scu=True)
    Service("exporter", "run the exporter in the foreground", load, _build, _checked).register(sub, __doc__)
