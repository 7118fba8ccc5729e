"""The adapter with pynetdicom's public chunked receive instead of its hand-written receiver (issue 18).

The alternative the receiver decision measured, kept so that ``benchmarks/ingest.py`` prints both
side by side. Everything else is the shipped adapter (connection gate, grouping, job store):

* ``pynetdicom._config.STORE_RECV_CHUNKED_DATASET = True``: pynetdicom writes each data set to a
  temporary file (File Meta Information first) as its P-DATA arrives and hands the C-STORE handler
  ``event.dataset_path``; its temporary folder is set to the storage root, so the file can be
  renamed into the job's folder (same file system);
* the handler walks the data set from the file (the study UID and the same integrity check as the
  hand-written path: :class:`~appliance.adapter.identify.DatasetWalker`), reserves the group, then
  ``fdatasync``, rename, folder ``fsync``, and only then returns 0x0000: the same durability.

Usage (what ingest.py runs): ``python benchmarks/chunked_receiver.py --config adapter.yaml``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from pynetdicom import _config, evt
from pynetdicom.events import Event

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from appliance.adapter.gate import GatedServer  # noqa: E402
from appliance.adapter.grouping import INSTANCE_SUFFIX, Grouper  # noqa: E402
from appliance.adapter.identify import DatasetWalker, NotIdentifiable, Unparseable, is_uid  # noqa: E402
from appliance.adapter.service import Adapter  # noqa: E402
from appliance.cli import logs  # noqa: E402
from appliance.jobs import StoreError  # noqa: E402
from appliance.settings import load_config  # noqa: E402
from appliance.storage import fsync_dir  # noqa: E402
from appliance.systemd import on_stop_signals  # noqa: E402

_READ = 1 << 20


def _dataset_offset(path: Path) -> int:
    """Where the data set starts in a Part 10 file: after preamble, ``DICM`` and the meta group."""
    with path.open("rb") as f:
        head = f.read(144)
    return 144 + int.from_bytes(head[140:144], "little")


def _store(grouper: Grouper, event: Event) -> int:
    path = Path(event.dataset_path)
    request: Any = event.request
    sop_uid = str(request.AffectedSOPInstanceUID or "").strip("\0 ")
    if not is_uid(sop_uid):
        return 0xC000
    walker = DatasetWalker(str(event.context.transfer_syntax))
    with path.open("rb") as f:
        f.seek(_dataset_offset(path))
        while chunk := f.read(_READ):
            walker.feed(chunk)
    try:
        identity = walker.finish()
    except NotIdentifiable as exc:
        return 0xC000 if isinstance(exc, Unparseable) else 0xA900
    assoc = event.assoc
    try:
        slot = grouper.reserve(assoc.acceptor.ae_title, str(assoc.requestor.ae_title).strip(), identity.study_uid)
    except (OSError, StoreError):
        return 0xA700
    try:
        if not slot.claim(sop_uid):
            return 0x0000  # keep-first
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fdatasync(fd)
        finally:
            os.close(fd)
        os.rename(path, f"{slot.input_dir}/{sop_uid}{INSTANCE_SUFFIX}")
        fsync_dir(slot.input_dir)
        slot.stored(sop_uid)
        return 0x0000
    except OSError:
        return 0xA700
    finally:
        grouper.release(slot)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--log-level", default="WARNING", choices=logs.LEVELS)
    args = parser.parse_args()
    logs.configure(args.log_level)
    config = load_config(args.config)
    _config.STORE_RECV_CHUNKED_DATASET = True
    tempfile.tempdir = str(config.storage.root)  # where pynetdicom's temporary files go
    Path(config.storage.root).mkdir(parents=True, exist_ok=True)
    holder: list[Adapter] = []

    def receiver(server: GatedServer, start: object) -> None:
        server.bind(evt.EVT_C_STORE, lambda event: _store(holder[0].grouper, event))

    adapter = Adapter(config, receiver=receiver)
    holder.append(adapter)
    on_stop_signals(adapter.request_stop)
    return adapter.run()


if __name__ == "__main__":
    sys.exit(main())
