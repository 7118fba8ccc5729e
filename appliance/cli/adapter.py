"""``appliance adapter --config PATH``: run the DICOM adapter in the foreground (systemd-friendly)."""

from __future__ import annotations

import argparse

from appliance.cli.service import Runnable, Service
from appliance.settings import AdapterConfig, load_config


def _build(config: AdapterConfig) -> Runnable:
    from appliance.adapter.service import Adapter

    return Adapter(config)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``adapter`` sub-command (``--check`` only validates the configuration)."""
    Service("adapter", "run the DICOM adapter in the foreground", load_config, _build).register(sub, __doc__)
