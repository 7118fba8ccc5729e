"""The hand-written receiver pins the pynetdicom versions it supports, and what it relies on is there.

It uses pynetdicom internals (see appliance/adapter/fastpath/__init__.py). When pynetdicom is
upgraded, these tests fail first, by name, rather than the adapter failing in service.
"""

from __future__ import annotations

import re
from pathlib import Path

import pynetdicom.association
import pynetdicom.dul
import pytest
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.transport import RequestHandler

from appliance.adapter import fastpath

ROOT = Path(__file__).resolve().parents[2]


def _version(text: str) -> tuple[int, ...]:
    parts = tuple(int(p) for p in text.split("."))
    return parts + (0,) * (3 - len(parts))


def test_the_supported_range_is_the_projects_pin_and_holds_the_installed_version() -> None:
    (pin,) = re.findall(r'"(pynetdicom[^"]*)"', (ROOT / "pyproject.toml").read_text())
    match = re.fullmatch(r"pynetdicom>=([\d.]+),<([\d.]+)", pin.replace(" ", ""))
    assert match, f"pyproject.toml pins pynetdicom as {pin!r}; the receiver needs a closed range"
    assert (_version(match[1]), _version(match[2])) == fastpath.SUPPORTED
    assert fastpath.SUPPORTED[0] <= fastpath._installed() < fastpath.SUPPORTED[1]


def test_the_internals_it_relies_on_are_there() -> None:
    assoc = Association(AE(), "acceptor")
    dul = assoc.dul
    for name in ("_read_pdu_data", "_idle_timer", "_kill_thread", "event_queue", "to_provider_queue",
                 "to_user_queue", "_recv_pdu", "state_machine"):
        assert hasattr(dul, name), f"DULServiceProvider.{name}"
    assert dul._run_loop_delay == 0.001  # the pause the wake-ups stretch
    assert dul.state_machine.current_state == "Sta1"
    for name in ("_accepted_cx", "dimse", "acse", "_reactor_checkpoint"):
        assert hasattr(assoc, name), f"Association.{name}"
    for name in ("msg_queue", "message", "receive_primitive", "send_msg", "maximum_pdu_size"):
        assert hasattr(assoc.dimse, name), f"DIMSEServiceProvider.{name}"
    assert callable(RequestHandler._create_association)
    # The reactors sleep through the module-level name ``time`` (replaced by the shim).
    assert hasattr(pynetdicom.association, "time") and hasattr(pynetdicom.dul, "time")


def test_an_unsupported_pynetdicom_stops_the_adapter_with_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fastpath, "_installed", lambda: (3, 1, 0))
    with pytest.raises(fastpath.UnsupportedPynetdicom, match=r"pynetdicom 3\.1\.0 is installed.*3\.0\.0"):
        fastpath.install(object(), lambda *a: None, max_pdu_bytes=1 << 20,  # type: ignore[arg-type]
                         max_request_bytes=65536, max_command_bytes=65536)
