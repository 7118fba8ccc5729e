"""``appliance adapter --config PATH``: run the DICOM adapter in the foreground (systemd-friendly)."""

from __future__ import annotations

import argparse
import functools

from appliance.cli.service import Runnable, Service, load_checked
from appliance.settings import AdapterConfig


def _build(config: AdapterConfig) -> Runnable:
    from appliance.adapter.service import Adapter

    return Adapter(config)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``adapter`` sub-command (``--check`` only validates the configuration)."""
    load = functools.partial(load_checked, scp=True)
    Service("adapter", "run the DICOM adapter in the foreground", load, _build).register(sub, __doc__)
