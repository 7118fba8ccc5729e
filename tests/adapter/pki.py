"""Throw-away certificates for the TLS tests, made with the ``openssl`` command (never committed).

One CA signs a certificate for 127.0.0.1/localhost (servers) and one for a client; a second,
unrelated CA signs a client certificate nobody trusts. RSA 2048, valid two days, both server and
client usage, so that either can play either role.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class Identity:
    """A certificate (PEM) and its private key (PEM, not encrypted)."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    ca: Path  #: the trusted CA's certificate
    server: Identity  #: signed by ``ca``; names 127.0.0.1 and localhost
    client: Identity  #: signed by ``ca``
    rogue: Identity  #: signed by a CA nobody trusts


def _openssl(*args: str | Path) -> None:
    done = subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise AssertionError(f"openssl {' '.join(map(str, args))}: {done.stderr}")


def _ca(folder: Path, name: str) -> Identity:
    ca = Identity(folder / f"{name}.pem", folder / f"{name}.key")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
             "-keyout", ca.key, "-out", ca.cert,
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return ca


def _issue(folder: Path, name: str, ca: Identity) -> Identity:
    leaf = Identity(folder / f"{name}.pem", folder / f"{name}.key")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
             "-CA", ca.cert, "-CAkey", ca.key, "-keyout", leaf.key, "-out", leaf.cert,
             "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
             "-addext", "basicConstraints=critical,CA:FALSE",
             "-addext", "keyUsage=critical,digitalSignature,keyEncipherment",
             "-addext", "extendedKeyUsage=serverAuth,clientAuth")
    leaf.key.chmod(0o600)
    return leaf


def make_pki(folder: Path) -> Pki:
    """Write the CAs, certificates and keys under ``folder`` (skips the test without ``openssl``)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed (apt-get install openssl)")
    folder.mkdir(parents=True, exist_ok=True)
    ca, untrusted = _ca(folder, "test-ca"), _ca(folder, "untrusted-ca")
    return Pki(ca.cert, _issue(folder, "server", ca), _issue(folder, "client", ca), _issue(folder, "rogue", untrusted))
