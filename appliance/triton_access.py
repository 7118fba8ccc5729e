"""The key that guards Triton's state-changing APIs, on the server's command line and in requests.

The appliance's Triton (``triton_local`` on CPU, the container on GPU) starts with Triton's
restricted-API options: model control, system/CUDA shared-memory registration, and the logging and
trace settings answer only requests that carry the key in a header. Health, metadata, model
configuration, statistics and inference stay open. The worker reads the key from a file that only
the service group can read (the triton role writes it) and sends it with every request.

Local users can still read the server's command line (``/proc/PID/cmdline``) unless ``/proc`` is
mounted with ``hidepid``; the key keeps out processes that talk to the port without it.
"""

from __future__ import annotations

import secrets
from pathlib import Path

KEY_HEADER = "appliance-triton-key"
"""The HTTP header that carries the key."""
GRPC_KEY_HEADER = f"triton-grpc-protocol-{KEY_HEADER}"
"""The gRPC metadata key that carries it: tritonserver (2.51) expects the header under this prefix."""
RESTRICTED_APIS = ("model-repository", "shared-memory", "logging", "trace")
"""The APIs that need the key (Triton's names; the same on HTTP and gRPC)."""


class KeyFileError(RuntimeError):
    """The key file cannot be read or holds no key."""


def new_key() -> str:
    """A fresh random key: 64 hex digits (256 bits)."""
    return secrets.token_hex(32)


def read_key(path: str | Path) -> str:
    """The key in ``path`` (surrounding whitespace ignored)."""
    try:
        key = Path(path).read_text().strip()
    except OSError as exc:
        raise KeyFileError(f"cannot read the Triton key file {path}: {exc.strerror}") from exc
    if not key or any(c.isspace() or c in ",:=" for c in key):
        raise KeyFileError(f"the Triton key file {path} holds no usable key (one word, no ',', ':' or '=')")
    return key


def server_flags(key: str) -> list[str]:
    """tritonserver options that restrict :data:`RESTRICTED_APIS` to requests carrying ``key``."""
    spec = f"{','.join(RESTRICTED_APIS)}:{KEY_HEADER}={key}"
    return [f"--http-restricted-api={spec}", f"--grpc-restricted-protocol={spec}"]


def request_headers(key: str) -> dict[str, str]:
    """Headers that carry ``key``; both names, so one dict serves the HTTP and the gRPC client."""
    return {KEY_HEADER: key, GRPC_KEY_HEADER: key}


def main(argv: list[str] | None = None) -> int:
    """``python -m appliance.triton_access --key-file FILE``: print the tritonserver options, one a
    line, for a server started by a shell (the triton role's GPU unit)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m appliance.triton_access", description=main.__doc__)
    parser.add_argument("--key-file", required=True, help="the file holding the key")
    args = parser.parse_args(argv)
    try:
        print("\n".join(server_flags(read_key(args.key_file))))
    except KeyFileError as exc:
        parser.exit(2, f"{exc}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
