"""DICOM over TLS (PS3.15 B.1, the BCP 195 profiles): SSL contexts from the ``tls`` settings.

:func:`server_context` serves the SCP's port (``dicom.scp.tls``), :func:`client_context` one
destination of the exporter (``dicom.scu.destinations[].tls``). Both allow TLS 1.2 and later only,
with Python's default cipher list (forward-secret AEAD suites, as BCP 195 asks). Every file is read
when the context is made, so a missing or unreadable file, a file that is not PEM, or a key that
does not belong to its certificate is a :class:`TlsSettingError` naming the setting;
:func:`problems` collects them for a whole configuration (the services check them at start).

Private keys must not be encrypted: a service has nobody to type a pass phrase. Restrict who can
read them instead (the appliance role installs them mode 0640, group of the services).
"""

from __future__ import annotations

import ssl
from pathlib import Path

from appliance.settings import AdapterConfig, ScpTlsConfig, ScuTlsConfig

#: A location in the configuration file, as the settings module reports it (kebab-case keys).
Loc = tuple[str | int, ...]


class TlsSettingError(ValueError):
    """A TLS file named by the setting at ``loc`` cannot be used; ``str()`` says why."""

    def __init__(self, loc: Loc, message: str) -> None:
        super().__init__(message)
        self.loc = loc


class _NoPassword(Exception):
    pass


def _no_password() -> bytes:
    # Called by OpenSSL only for an encrypted key; without it, it would prompt on the terminal.
    raise _NoPassword


def _readable(path: Path, loc: Loc) -> None:
    try:
        with path.open("rb") as handle:
            handle.read(1)
    except OSError as exc:
        raise TlsSettingError(loc, f"cannot read {path}: {exc.strerror or exc}") from exc


def _why(exc: ssl.SSLError) -> str:
    return f" ({exc.reason})" if exc.reason else ""


def _load_cas(context: ssl.SSLContext, path: Path, loc: Loc) -> None:
    _readable(path, loc)
    try:
        context.load_verify_locations(cafile=str(path))
    except ssl.SSLError as exc:
        raise TlsSettingError(loc, f"{path} holds no PEM certificate{_why(exc)}") from exc


def _load_identity(context: ssl.SSLContext, certificate: Path, key: Path, at: Loc) -> None:
    cert_loc, key_loc = (*at, "certificate"), (*at, "private-key")
    _readable(certificate, cert_loc)
    _readable(key, key_loc)
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:  # the certificate alone first, so that a bad one is not blamed on the key
        probe.load_verify_locations(cafile=str(certificate))
    except ssl.SSLError as exc:
        raise TlsSettingError(cert_loc, f"{certificate} holds no PEM certificate{_why(exc)}") from exc
    try:
        context.load_cert_chain(str(certificate), str(key), password=_no_password)
    except _NoPassword as exc:
        raise TlsSettingError(key_loc, f"{key} is encrypted; give the key without a pass phrase") from exc
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise TlsSettingError(key_loc, f"{key} is not the key of {certificate}") from exc
        raise TlsSettingError(key_loc, f"{key} holds no PEM private key{_why(exc)}") from exc


def _context(server: bool) -> ssl.SSLContext:
    # The constructor's defaults are the secure ones (no compression, forward-secret AEAD suites
    # first); client contexts verify the peer and its name unless told otherwise.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def server_context(tls: ScpTlsConfig, at: Loc = ("dicom", "scp", "tls")) -> ssl.SSLContext:
    """The SCP's context: our certificate; with ``ca-certificates``, senders' certificates are
    verified when presented, and with ``require-client-certificate`` one is required."""
    context = _context(server=True)
    _load_identity(context, tls.certificate, tls.private_key, at)
    if tls.ca_certificates is not None:
        _load_cas(context, tls.ca_certificates, (*at, "ca-certificates"))
        context.verify_mode = ssl.CERT_REQUIRED if tls.require_client_certificate else ssl.CERT_OPTIONAL
    return context


def client_context(tls: ScuTlsConfig, at: Loc) -> ssl.SSLContext:
    """A destination's context: its certificate is verified (against ``ca-certificates``, else the
    system's CAs) and, with ``check-hostname``, must name the host we connect to; we present our
    certificate when one is set."""
    context = _context(server=False)
    if tls.ca_certificates is not None:
        _load_cas(context, tls.ca_certificates, (*at, "ca-certificates"))
    else:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    context.check_hostname = tls.check_hostname
    if tls.certificate is not None and tls.private_key is not None:
        _load_identity(context, tls.certificate, tls.private_key, at)
    return context


def problems(config: AdapterConfig, *, scp: bool = False, scu: bool = False) -> list[tuple[Loc, str]]:
    """Every TLS setting whose files cannot be used: the SCP's (``scp``), the destinations' (``scu``)."""
    found: list[tuple[Loc, str]] = []
    if scp and config.dicom.scp.tls is not None:
        try:
            server_context(config.dicom.scp.tls)
        except TlsSettingError as exc:
            found.append((exc.loc, str(exc)))
    if scu:
        for i, destination in enumerate(config.dicom.scu.destinations):
            if destination.tls is not None:
                try:
                    client_context(destination.tls, ("dicom", "scu", "destinations", i, "tls"))
                except TlsSettingError as exc:
                    found.append((exc.loc, str(exc)))
    return found


__all__ = ["Loc", "TlsSettingError", "client_context", "problems", "server_context"]
