"""DICOM over TLS, over the wire with dcmtk's TLS-enabled tools: ``storescu +tls`` into the adapter's
TLS port, the exporter into ``storescp +tls``; mutual TLS; what is refused; bad files at start.

The certificates are made per session by :mod:`pki` (``openssl``); nothing is committed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import ssl
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from adapterkit import APPLIANCE, Adapter, StoreSCP, base_config, free_port, need, stand_in_pipeline, storescu, wait_for
from ctseries import Series
from pki import Identity, Pki, make_pki

from appliance.dicomnet.tls import TlsSettingError, client_context, server_context
from appliance.settings import ScpTlsConfig, ScuTlsConfig


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session", autouse=True)
def _dcmtk_has_tls() -> None:
    exe = need("storescu")
    usage = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=30).stdout
    if "+tls" not in usage:
        pytest.skip("this dcmtk was built without OpenSSL (storescu --help lists no +tls)")


def _scp_tls(pki: Pki, mutual: bool = False) -> dict[str, Any]:
    tls: dict[str, Any] = {"certificate": str(pki.server.cert), "private-key": str(pki.server.key)}
    if mutual:
        tls |= {"ca-certificates": str(pki.ca), "require-client-certificate": True}
    return tls


def _tls_args(pki: Pki, identity: Identity | None) -> list[str]:
    """storescu/echoscu options: TLS with ``identity`` (None: no client certificate), trusting our CA."""
    own = ["+tla"] if identity is None else ["+tls", str(identity.key), str(identity.cert), "-pw"]
    return [*own, "+cf", str(pki.ca)]


def _stored(adapter: Adapter) -> list[Path]:
    return sorted(adapter.root.glob("*/input/*.dcm"))


def test_storescu_over_tls_is_stored_and_plain_tcp_is_refused(
    adapter_factory: Callable[..., Adapter], pki: Pki, series: Series
) -> None:
    a = adapter_factory(**{"dicom.scp.tls": _scp_tls(pki), "dicom.scp.artim-seconds": 2}).start()
    assert "(TLS)" in a.log()

    plain = storescu(a.port, series.files[:2])
    assert plain.returncode != 0
    assert _stored(a) == []

    # The handshake and the A-ASSOCIATE-RQ are read in the connection gate, not in the accept loop
    # or a thread of their own: peers that never start the handshake, stop half-way, or complete it
    # and then send nothing or garbage are closed at the ARTIM timeout or at once, and others are
    # served meanwhile.
    trusting = ssl.create_default_context(cafile=str(pki.ca))
    with contextlib.ExitStack() as peers:
        idle = [peers.enter_context(socket.create_connection(("127.0.0.1", a.port))) for _ in range(4)]
        idle[1].sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # the start of a ClientHello
        silent = peers.enter_context(trusting.wrap_socket(socket.create_connection(("127.0.0.1", a.port)),
                                                          server_hostname="127.0.0.1"))
        garbage = peers.enter_context(trusting.wrap_socket(socket.create_connection(("127.0.0.1", a.port)),
                                                           server_hostname="127.0.0.1"))
        garbage.sendall(b"GET / HTTP/1.0\r\n\r\n")
        sent = storescu(a.port, series.files, "OrganSeg", "STORESCU", *_tls_args(pki, None), timeout=30)
        assert sent.returncode == 0, sent.stderr
        for peer in (garbage, silent, *idle):
            peer.settimeout(10)
            assert peer.recv(1) == b""  # closed by the adapter
    (job,) = a.wait_jobs("ready", 1)
    assert job["instance_count"] == len(series.files) and len(_stored(a)) == len(series.files)
    assert "TLS handshake failed (WRONG_VERSION_NUMBER)" in a.log()
    assert a.stop() == 0


def test_mutual_tls_requires_a_trusted_client_certificate(
    adapter_factory: Callable[..., Adapter], pki: Pki, series: Series
) -> None:
    a = adapter_factory(**{"dicom.scp.tls": _scp_tls(pki, mutual=True)}).start()
    assert "(TLS, client certificate required)" in a.log()

    for refused in (None, pki.rogue):  # no certificate; one from a CA we do not trust
        done = storescu(a.port, series.files[:2], "OrganSeg", "STORESCU", *_tls_args(pki, refused))
        assert done.returncode != 0
    assert _stored(a) == []
    log = a.log()
    assert "PEER_DID_NOT_RETURN_A_CERTIFICATE" in log and "CERTIFICATE_VERIFY_FAILED" in log

    sent = storescu(a.port, series.files, "OrganSeg", "STORESCU", *_tls_args(pki, pki.client))
    assert sent.returncode == 0, sent.stderr
    (job,) = a.wait_jobs("ready", 1)
    assert job["instance_count"] == len(series.files)


def _storescp_tls(folder: Path, pki: Pki, mutual: bool = False) -> StoreSCP:
    """dcmtk ``storescp +tls`` (AE PACS) with our server certificate; ``mutual``: it requires ours."""
    peer = ("+cf", str(pki.ca), "-rc") if mutual else ("-ic",)
    return StoreSCP(folder, "+tls", str(pki.server.key), str(pki.server.cert), "-pw", *peer)


@pytest.fixture
def storescp_factory(tmp_path: Path) -> Iterator[Callable[..., StoreSCP]]:
    made: list[StoreSCP] = []

    def make(pki: Pki, mutual: bool = False) -> StoreSCP:
        made.append(_storescp_tls(tmp_path / f"storescp{len(made)}", pki, mutual))
        return made[-1]

    yield make
    for scp in made:
        scp.stop()


def test_exporter_sends_results_to_storescp_over_tls(
    adapter_factory: Callable[..., Adapter], storescp_factory: Callable[..., StoreSCP],
    with_exporter: Callable[[Adapter], Adapter], pki: Pki, series: Series, tmp_path: Path
) -> None:
    """One job, three TLS destinations: server authentication only; mutual TLS (we present our
    certificate); and one whose certificate we cannot verify (no ca-certificates: the system's
    CAs do not know our test CA), which is refused and sent nothing."""
    scps = {"SERVERAUTH": storescp_factory(pki), "MUTUAL": storescp_factory(pki, mutual=True),
            "UNVERIFIED": storescp_factory(pki)}
    tls: dict[str, dict[str, Any]] = {
        "SERVERAUTH": {"ca-certificates": str(pki.ca)},
        "MUTUAL": {"ca-certificates": str(pki.ca), "certificate": str(pki.client.cert),
                   "private-key": str(pki.client.key)},
        "UNVERIFIED": {},
    }
    folder = tmp_path / "a"
    folder.mkdir()
    cfg = base_config(folder, free_port())
    cfg["dicom"]["scu"]["destinations"] = [
        {"name": name, "host-ip": "127.0.0.1", "port": scp.port, "ae-title": "PACS", "tls": tls[name]}
        for name, scp in scps.items()]
    cfg["dicom"]["scp"]["ae-titles"][0]["destinations"] = list(scps)
    a = with_exporter(adapter_factory(cfg).start())
    assert storescu(a.port, series.files[:3]).returncode == 0
    a.wait_jobs("ready", 1)
    job_id, _ = stand_in_pipeline(a.root)
    a.wait_jobs("failed", 1)
    exports = a.job(job_id)["exports"]
    outcomes = {(e["destination"], e["outcome"], e["sent"]) for e in exports}
    assert {("SERVERAUTH", "sent", 3), ("MUTUAL", "sent", 3)} <= outcomes
    assert {e["outcome"] for e in exports if e["destination"] == "UNVERIFIED"} <= {"transient", "failed"}
    assert all("TLS handshake failed" in e["detail"] for e in exports if e["destination"] == "UNVERIFIED")
    wait_for(lambda: len(scps["SERVERAUTH"].received()) == len(scps["MUTUAL"].received()) == 3, 10,
             "3 files at each verified storescp")
    assert scps["UNVERIFIED"].received() == []
    assert "CERTIFICATE_VERIFY_FAILED" in (a.tmp / "exporter.log").read_text()


def _check(command: str, tmp_path: Path, config: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "adapter.yaml"
    Adapter(tmp_path, config)  # writes the file
    return subprocess.run([str(APPLIANCE), command, "--config", str(path), "--check"],
                          capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize(("change", "key", "message"), [
    ({"certificate": "/nonexistent/cert.pem"}, "dicom.scp.tls.certificate",
     "cannot read /nonexistent/cert.pem: No such file or directory"),
    ({"private-key": "CLIENT_KEY"}, "dicom.scp.tls.private-key", "is not the key of"),
    ({"certificate": "CA_KEY"}, "dicom.scp.tls.certificate", "holds no PEM certificate"),
    ({"ca-certificates": "/nonexistent/ca.pem"}, "dicom.scp.tls.ca-certificates", "cannot read"),
])
def test_bad_scp_tls_files_are_named_at_start(pki: Pki, tmp_path: Path, change: dict[str, str], key: str,
                                              message: str) -> None:
    files = {"CLIENT_KEY": str(pki.client.key), "CA_KEY": str(pki.ca.with_suffix(".key"))}
    tls = _scp_tls(pki) | {k: files.get(v, v) for k, v in change.items()}
    done = _check("adapter", tmp_path, base_config(tmp_path, free_port(), **{"dicom.scp.tls": tls}))
    assert done.returncode == 2, done.stdout
    assert f": {key}: " in done.stderr and message in done.stderr, done.stderr
    if "private-key" in change:  # the service itself stops the same way, before it listens
        started = subprocess.run([str(APPLIANCE), "adapter", "--config", str(tmp_path / "adapter.yaml")],
                                 capture_output=True, text=True, timeout=30)
        assert started.returncode == 2 and f": {key}: " in started.stderr


def test_bad_destination_tls_files_are_named_at_start(pki: Pki, tmp_path: Path) -> None:
    cfg = base_config(tmp_path, free_port())
    cfg["dicom"]["scu"]["destinations"] = [
        {"name": "PACS", "host-ip": "127.0.0.1", "port": 104, "ae-title": "PACS",
         "tls": {"ca-certificates": str(pki.ca), "certificate": str(pki.client.cert),
                 "private-key": str(pki.server.key)}}]
    done = _check("exporter", tmp_path, cfg)
    assert done.returncode == 2
    assert ": dicom.scu.destinations[0].tls.private-key: " in done.stderr and "is not the key of" in done.stderr


def test_tls_files_are_checked_in_process(pki: Pki, tmp_path: Path) -> None:
    """What the start errors above rest on, without a process: contexts and each kind of bad key."""
    good = ScpTlsConfig(certificate=pki.server.cert, private_key=pki.server.key, ca_certificates=pki.ca,
                        require_client_certificate=True)
    assert server_context(good).verify_mode == ssl.CERT_REQUIRED
    assert server_context(dataclasses.replace(good, require_client_certificate=False)).verify_mode == ssl.CERT_OPTIONAL
    client = client_context(ScuTlsConfig(ca_certificates=pki.ca, check_hostname=False), ("d",))
    assert client.verify_mode == ssl.CERT_REQUIRED and not client.check_hostname
    encrypted = tmp_path / "encrypted.key"
    subprocess.run(["openssl", "pkey", "-in", str(pki.server.key), "-aes256", "-passout", "pass:secret",
                    "-out", str(encrypted)], check=True, capture_output=True, timeout=60)
    for key, message in ((encrypted, "is encrypted; give the key without a pass phrase"),
                         (pki.server.cert, "holds no PEM private key"), (tmp_path, "cannot read")):
        with pytest.raises(TlsSettingError, match=message) as caught:
            server_context(dataclasses.replace(good, private_key=key))
        assert caught.value.loc == ("dicom", "scp", "tls", "private-key")
