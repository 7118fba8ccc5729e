"""Orthanc as the PACS: it sends a study to the adapter; the exporter sends the results to it."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from adapterkit import Adapter, Orthanc, base_config, free_port, stand_in_pipeline, storescu
from ctseries import Series


@pytest.fixture
def orthanc_factory(tmp_path: Path) -> Iterator[Callable[..., Orthanc]]:
    made: list[Orthanc] = []

    def make(**kwargs: object) -> Orthanc:
        o = Orthanc(tmp_path / f"orthanc{len(made)}", **kwargs)  # type: ignore[arg-type]
        made.append(o)
        return o

    yield make
    for o in made:
        o.stop()


def _config(tmp: Path, port: int, pacs_port: int, pacs_ae: str = "ORTHANC", **overrides: Any) -> dict[str, Any]:
    cfg = base_config(tmp, port, **overrides)
    cfg["dicom"]["scu"]["destinations"] = [
        {"name": "MYPACS", "host-ip": "127.0.0.1", "port": pacs_port, "ae-title": pacs_ae}]
    cfg["dicom"]["scp"]["ae-titles"][0]["destinations"] = ["MYPACS"]
    return cfg


def test_orthanc_sends_a_study_and_receives_the_results(
    adapter_factory: Callable[..., Adapter], orthanc_factory: Callable[..., Orthanc],
    with_exporter: Callable[[Adapter], Adapter], series: Series, tmp_path: Path
) -> None:
    port = free_port()
    pacs = orthanc_factory(modalities={"clara": ["OrganSeg", "127.0.0.1", port]})
    cfg = _config(tmp_path / "a", port, pacs.dicom_port, **{
        "dicom.scp.reject-unknown-sources": True,
        "dicom.scp.sources": [{"host-ip": "127.0.0.1", "ae-title": "ORTHANC"}]})
    (tmp_path / "a").mkdir()
    a = with_exporter(adapter_factory(cfg).start())

    for path in series.files:
        pacs.post("/instances", path.read_bytes(), "application/dicom")
    (study_id,) = pacs.get("/studies")
    pacs.post("/modalities/clara/store", json.dumps({"Resources": [study_id], "Synchronous": True}).encode())
    (job,) = a.wait_jobs("ready", 1)
    assert job["calling_ae"] == "ORTHANC" and job["instance_count"] == len(series.files)
    assert job["destinations"] == ["MYPACS"]

    job_id, result_series = stand_in_pipeline(a.root)
    (done,) = a.wait_jobs("done", 1)
    assert done["id"] == job_id
    exports = a.job(job_id)["exports"]
    assert [(e["destination"], e["outcome"], e["sent"]) for e in exports] == [
        ("MYPACS", "sent", len(series.files))]
    assert len(pacs.find_instances(SeriesInstanceUID=result_series)) == len(series.files)


def test_transient_failures_are_retried_with_backoff_then_recorded(
    adapter_factory: Callable[..., Adapter], orthanc_factory: Callable[..., Orthanc],
    with_exporter: Callable[[Adapter], Adapter], series: Series, tmp_path: Path
) -> None:
    pacs = orthanc_factory(start=False)  # ports chosen, nothing listening yet: refused
    (tmp_path / "a").mkdir()
    a = with_exporter(adapter_factory(_config(tmp_path / "a", free_port(), pacs.dicom_port)).start())
    assert storescu(a.port, series.files[:3]).returncode == 0
    a.wait_jobs("ready", 1)
    job_id, result_series = stand_in_pipeline(a.root)
    (failed,) = a.wait_jobs("failed", 1)
    assert failed["failed_phase"] == "export"
    tries = a.job(job_id)["exports"]
    assert [e["outcome"] for e in tries] == ["transient", "transient", "failed"]
    assert "next try in 0.2 s" in tries[0]["detail"] and "next try in 0.4 s" in tries[1]["detail"]
    assert "gave up after 3" in tries[2]["detail"]

    pacs.start()
    assert "exporting" in a.cli("retry", job_id).stdout
    (done,) = a.wait_jobs("done", 1)
    assert done["attempt"] == 2
    assert len(pacs.find_instances(SeriesInstanceUID=result_series)) == 3


def test_permanent_rejection_is_not_retried(
    adapter_factory: Callable[..., Adapter], with_exporter: Callable[[Adapter], Adapter], series: Series,
    tmp_path: Path
) -> None:
    # The destination is the adapter itself under an AE title it does not have: rejected-permanent.
    port = free_port()
    (tmp_path / "a").mkdir()
    a = with_exporter(adapter_factory(_config(tmp_path / "a", port, port, pacs_ae="NOBODY")).start())
    assert storescu(a.port, series.files[:2]).returncode == 0
    a.wait_jobs("ready", 1)
    job_id, _ = stand_in_pipeline(a.root)
    a.wait_jobs("failed", 1)
    (only,) = a.job(job_id)["exports"]
    assert only["outcome"] == "failed" and only["attempt"] == 1
    assert "rejected (result 1, source 1, reason 7)" in only["detail"]
