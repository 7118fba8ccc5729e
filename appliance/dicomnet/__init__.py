"""What every DICOM service shares: setting up an AE and its sockets; the transfer syntaxes the
pipeline decodes, which the SCP negotiates (:mod:`appliance.dicomnet.syntaxes`).

Used by the exporter (an SCU); the adapter's acceptor sets ``TCP_NODELAY`` on the sockets it
accepts itself (:mod:`appliance.adapter.gate`).
"""

from __future__ import annotations

import socket

from pynetdicom import AE
from pynetdicom.association import Association


def requestor(ae_title: str, timeout: float) -> AE:
    """An AE that requests associations as ``ae_title``; ``timeout`` (seconds) applies to
    connecting, association negotiation, each DIMSE response and network silence."""
    ae = AE(ae_title=ae_title)
    ae.connection_timeout = timeout
    ae.acse_timeout = timeout
    ae.dimse_timeout = timeout
    ae.network_timeout = timeout
    return ae


def set_nodelay(sock: socket.socket | None) -> None:
    """Disable Nagle on ``sock``: pynetdicom never does, and each small response would otherwise wait
    for the peer's delayed ACK (about 40 ms per message)."""
    if sock is not None and sock.fileno() >= 0:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def nodelay(assoc: Association) -> Association:
    """``assoc`` with Nagle disabled on its socket, once established."""
    set_nodelay(assoc.dul.socket.socket if assoc.dul.socket else None)
    return assoc


__all__ = ["nodelay", "requestor", "set_nodelay"]
