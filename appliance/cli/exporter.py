"""``appliance exporter --config PATH``: run the exporter in the foreground (systemd-friendly).

Sends the results of ``exporting`` jobs to their destinations (``dicom.scu``, retries from
``export:``). Exit status 2: the configuration is invalid; 1: another exporter already uses the
job store, or the export loop died.
"""

from __future__ import annotations

import argparse

from appliance.cli.service import Runnable, Service
from appliance.settings import AdapterConfig, load_config


def _build(config: AdapterConfig) -> Runnable:
    from appliance.exporter.service import Exporter

    return Exporter(config)


def _checked(config: AdapterConfig) -> str:
    return "(destinations: " + (", ".join(d.name for d in config.dicom.scu.destinations) or "none") + ")"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``exporter`` sub-command (``--check`` only validates the configuration)."""
    Service("exporter", "run the exporter in the foreground", load_config, _build, _checked).register(sub, __doc__)
