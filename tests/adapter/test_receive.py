"""Receiving with dcmtk peers: association policy, C-ECHO, C-STORE, concurrency limits."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from pathlib import Path

import pytest
from adapterkit import Adapter, echoscu, storescu
from ctseries import Series, write_series
from pydicom.filereader import read_preamble
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

IMPLICIT, EXPLICIT, BIG = "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"


def _dataset_bytes(path: Path) -> bytes:
    """The encoded dataset of a Part 10 file, without preamble and file meta."""
    with path.open("rb") as f:
        read_preamble(f, force=False)
        from pydicom.filereader import _read_file_meta_info

        _read_file_meta_info(f)
        return f.read()


def test_store_acknowledged_instances_become_one_job_stored_verbatim(adapter: Adapter, series: Series) -> None:
    done = storescu(adapter.port, series.files)
    assert done.returncode == 0, done.stderr
    (job,) = adapter.wait_jobs("ready", 1)
    assert job["instance_count"] == len(series.files)
    assert job["study_uid"] == series.study_uid
    assert job["called_ae"] == "OrganSeg" and job["calling_ae"] == "STORESCU"
    assert job["workflow"] == "organ-seg"
    # The job ID is the payload folder's name.
    folder = adapter.root / job["id"]
    stored = sorted((folder / "input").iterdir())
    assert [p.name for p in stored] == sorted(f"{uid}.dcm" for uid in series.sop_uids)
    # Received bytes are stored as sent: the dataset part of each file is identical.
    by_uid = dict(zip(series.sop_uids, series.files, strict=True))
    for path in stored:
        assert _dataset_bytes(path) == _dataset_bytes(by_uid[path.stem])


def test_unknown_called_ae_is_rejected(adapter: Adapter, series: Series) -> None:
    done = echoscu(adapter.port, "NotOurs")
    assert done.returncode != 0
    assert "Called AE Title Not Recognized" in done.stdout + done.stderr
    assert "Rejected Permanent" in done.stdout + done.stderr
    assert storescu(adapter.port, series.files[:1], "NotOurs").returncode != 0
    assert adapter.jobs() == []


def test_unknown_sources_are_rejected_when_configured(adapter_factory: Callable[..., Adapter]) -> None:
    a = adapter_factory(**{
        "dicom.scp.reject-unknown-sources": True,
        "dicom.scp.sources": [{"host-ip": "127.0.0.1", "ae-title": "KNOWN"},
                              {"host-ip": "10.9.9.9", "ae-title": "ELSEWHERE"}],
    }).start()
    assert echoscu(a.port, "OrganSeg", "KNOWN").returncode == 0
    unknown = echoscu(a.port, "OrganSeg", "STRANGER")
    assert unknown.returncode != 0 and "Calling AE Title Not Recognized" in unknown.stdout + unknown.stderr
    # A known AE title from the wrong address: rejected, no reason given.
    wrong_host = echoscu(a.port, "OrganSeg", "ELSEWHERE")
    assert wrong_host.returncode != 0 and "Rejected Permanent" in wrong_host.stdout + wrong_host.stderr


@pytest.mark.parametrize("syntax", [IMPLICIT, EXPLICIT, BIG])
def test_echo_is_offered_on_configured_transfer_syntaxes_only(
    adapter_factory: Callable[..., Adapter], syntax: str
) -> None:
    configured = [IMPLICIT, syntax] if syntax != IMPLICIT else [EXPLICIT]
    a = adapter_factory(**{"dicom.scp.verification.transfer-syntaxes": configured}).start()
    # dcmtk proposes implicit LE (and with -pts 3 explicit LE and BE too); one configured suffices.
    assert echoscu(a.port, "OrganSeg", "ECHOSCU", "-pts", "3").returncode == 0
    for candidate in (IMPLICIT, EXPLICIT, BIG):
        ae = AE(ae_title="ECHOPROBE")
        ae.add_requested_context(Verification, [candidate])
        assoc = ae.associate("127.0.0.1", a.port, ae_title="OrganSeg")
        # pynetdicom gives up on an association where no context was accepted.
        assert assoc.is_established == (candidate in configured), candidate
        if assoc.is_established:
            assert [cx.transfer_syntax[0] for cx in assoc.accepted_contexts] == [candidate]
            assert assoc.send_c_echo().Status == 0x0000
            assoc.release()


def test_echo_disabled(adapter_factory: Callable[..., Adapter]) -> None:
    a = adapter_factory(**{"dicom.scp.verification.enabled": False}).start()
    done = echoscu(a.port)
    assert done.returncode != 0
    assert "No Acceptable Presentation Contexts" in done.stdout + done.stderr


def test_concurrent_associations_up_to_the_limit_then_a_clean_refusal(
    adapter_factory: Callable[..., Adapter], tmp_path: Path
) -> None:
    a = adapter_factory(**{"dicom.scp.max-associations": 3}).start()
    studies = [write_series(tmp_path / f"s{i}", 4, rows=128, cols=128) for i in range(3)]
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda s: storescu(a.port, s.files), studies))
    assert all(r.returncode == 0 for r in results), a.log()
    jobs = a.wait_jobs("ready", 3)
    assert sorted(j["study_uid"] for j in jobs) == sorted(s.study_uid for s in studies)
    assert all(j["instance_count"] == 4 for j in jobs)

    # Hold the limit's worth of associations open; the next one is refused, transiently.
    held = []
    try:
        for _ in range(3):
            ae = AE(ae_title="HOLDER")
            ae.add_requested_context(Verification)
            assoc = ae.associate("127.0.0.1", a.port, ae_title="OrganSeg")
            assert assoc.is_established
            held.append(assoc)
        refused = echoscu(a.port)
        assert refused.returncode != 0
        assert "Rejected Transient" in refused.stdout + refused.stderr
        assert "Local Limit Exceeded" in refused.stdout + refused.stderr
    finally:
        for assoc in held:
            assoc.release()
    assert echoscu(a.port).returncode == 0


def test_sigterm_stops_cleanly(adapter: Adapter) -> None:
    assert adapter.stop() == 0
    assert "stopped" in adapter.log()
