"""The exporter's per-destination queues: a black-holed PACS delays no other; a PACS that takes only
Implicit VR Little Endian still gets the results."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydicom
from adapterkit import Adapter, BlackHole, StoreSCP, base_config, free_port, need, stand_in_pipeline, storescu
from ctseries import Series
from pydicom.uid import ImplicitVRLittleEndian, RLELossless

#: The SCU's timeout: a sender stuck on the black hole waits this long per try.
TIMEOUT = 20


def _config(tmp: Path, destinations: dict[str, int]) -> dict[str, Any]:
    cfg = base_config(tmp, free_port(), **{"export.timeout-seconds": TIMEOUT, "export.max-attempts": 2})
    cfg["dicom"]["scu"]["destinations"] = [{"name": name, "host-ip": "127.0.0.1", "port": port, "ae-title": "PACS"}
                                           for name, port in destinations.items()]
    cfg["dicom"]["scp"]["ae-titles"][0]["destinations"] = list(destinations)
    return cfg


def test_a_black_holed_destination_delays_no_other(
    adapter_factory: Callable[..., Adapter], with_exporter: Callable[[Adapter], Adapter], series: Series,
    tmp_path: Path
) -> None:
    hole, live = BlackHole(), StoreSCP(tmp_path / "live")
    try:
        # HOLE first: a single export loop would wait out its timeout before LIVE's turn.
        (tmp_path / "a").mkdir()
        a = with_exporter(adapter_factory(_config(tmp_path / "a", {"HOLE": hole.port, "LIVE": live.port})).start())
        delays = []
        for n in range(3):
            assert storescu(a.port, series.files[:2]).returncode == 0
            a.wait_jobs("ready", 1)
            handed = time.monotonic()
            stand_in_pipeline(a.root)
            deadline = handed + TIMEOUT
            while len(live.received()) < 2 * (n + 1) and time.monotonic() < deadline:
                time.sleep(0.02)
            delays.append(time.monotonic() - handed)
        print("hand-over to received at LIVE, s:", [round(d, 2) for d in delays])
        assert len(live.received()) == 6
        assert max(delays) < 3, delays  # no try on HOLE, each TIMEOUT s long, stood in the way
        jobs = a.jobs()
        assert {j["state"] for j in jobs} == {"exporting"}  # HOLE still has them
        tasks = [t for j in jobs for t in a.job(j["id"])["export_tasks"]]
        assert {(t["destination"], t["state"]) for t in tasks if t["destination"] == "LIVE"} == {("LIVE", "sent")}
    finally:
        hole.stop()
        live.stop()


def test_a_pacs_taking_only_implicit_little_endian_gets_the_results(
    adapter_factory: Callable[..., Adapter], with_exporter: Callable[[Adapter], Adapter], series: Series,
    tmp_path: Path
) -> None:
    pacs = StoreSCP(tmp_path / "pacs", "+xi")  # accepts Implicit VR Little Endian only
    try:
        (tmp_path / "a").mkdir()
        a = with_exporter(adapter_factory(_config(tmp_path / "a", {"PACS": pacs.port})).start())
        assert storescu(a.port, series.files[:3]).returncode == 0
        a.wait_jobs("ready", 1)

        def rle_one(output: Path) -> None:  # one result RLE-compressed: decompressed, then sent implicit
            first = sorted(output.iterdir())[0]
            subprocess.run([need("dcmcrle"), str(first), str(first)], check=True)
            assert pydicom.dcmread(first).file_meta.TransferSyntaxUID == RLELossless

        job_id, _ = stand_in_pipeline(a.root, rle_one)
        output = a.root / job_id / "output"
        a.wait_jobs("done", 1)
        received = [pydicom.dcmread(p) for p in pacs.received()]
        assert len(received) == 3
        assert {str(ds.file_meta.TransferSyntaxUID) for ds in received} == {ImplicitVRLittleEndian}
        assert {ds.SOPInstanceUID for ds in received} == {pydicom.dcmread(p).SOPInstanceUID for p in output.iterdir()}
    finally:
        pacs.stop()
