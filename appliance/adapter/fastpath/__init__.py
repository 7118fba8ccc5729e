"""The hand-written C-STORE receiver: the only code in the appliance that uses pynetdicom's internals.

Kept because it measured 3.3x faster than pynetdicom's public chunked receive
(``_config.STORE_RECV_CHUNKED_DATASET``) for 200 x 512x512 CT and 4.2x for 2,000 small
instances, both with the same durable writes (docs/adapter.md, "The receiver"; issue 18). It
reads P-DATA off the socket itself (:mod:`.pdata`) and tunes pynetdicom's acceptor
(:mod:`.transport`); both depend on attributes and methods pynetdicom does not document
(``DULServiceProvider._read_pdu_data``, ``_idle_timer``, ``_kill_thread``,
``Association._accepted_cx``, ``RequestHandler._create_association`` and the ``time`` module
its reactors sleep with), so it supports exactly the versions in :data:`SUPPORTED`, which
``tests/adapter/test_fastpath.py`` pins against ``pyproject.toml`` and the installed version.

The interface is :func:`install`; nothing else is imported from this package.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import TYPE_CHECKING

from appliance.adapter.fastpath.pdata import Starter
from appliance.adapter.fastpath.pdata import install as _install_receiver
from appliance.adapter.fastpath.transport import cheap_context_copies, request_handler

if TYPE_CHECKING:
    from pynetdicom.transport import AssociationServer

#: pynetdicom versions this package was written and tested against: [first, end).
SUPPORTED = ((3, 0, 0), (3, 1, 0))


class UnsupportedPynetdicom(RuntimeError):
    """The installed pynetdicom is outside :data:`SUPPORTED`."""


def _installed() -> tuple[int, ...]:
    return tuple(int(part) for part in version("pynetdicom").split(".")[:3] if part.isdigit())


def install(server: AssociationServer, start: Starter, *, max_pdu_bytes: int,
            max_request_bytes: int, max_command_bytes: int) -> None:
    """Make ``server`` (not yet serving) receive C-STORE requests through the hand-written receiver.

    ``start(assoc, transfer_syntax, sop_class, sop_uid)`` makes the
    :class:`~appliance.adapter.instance.IncomingInstance` of each request. ``max_pdu_bytes`` is
    the maximum PDU length the server's AE announces; ``max_request_bytes`` caps PDUs read
    before or outside P-DATA (A-ASSOCIATE-RQ, A-RELEASE, A-ABORT); ``max_command_bytes`` caps a
    DIMSE command set. Raises :class:`UnsupportedPynetdicom` outside :data:`SUPPORTED`.
    """
    found = _installed()
    if not SUPPORTED[0] <= found < SUPPORTED[1]:
        raise UnsupportedPynetdicom(
            f"pynetdicom {'.'.join(map(str, found))} is installed; the adapter's receiver supports "
            f"{'.'.join(map(str, SUPPORTED[0]))} up to, not including, {'.'.join(map(str, SUPPORTED[1]))}")
    pdu_limit = max_pdu_bytes + 6

    def hook(assoc: object) -> None:
        _install_receiver(assoc, start, pdu_limit, max_command_bytes)  # type: ignore[arg-type]

    server.RequestHandlerClass = request_handler(hook, max_request_bytes + 6)
    cheap_context_copies(server)


__all__ = ["SUPPORTED", "Starter", "UnsupportedPynetdicom", "install"]
