"""``appliance dashboard --config PATH``: run the web dashboard and result viewer in the foreground;
``appliance dashboard-password``: make a password hash for ``dashboard.users``.

The dashboard reads the services' configuration file (its ``dashboard:`` block, the job store,
the payload folders, AE titles and destinations). Exit status 2: the configuration is invalid
(a dashboard needs at least one user, and its TLS files must be readable); 1: it cannot listen.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys

from appliance.cli.service import Runnable, Service
from appliance.settings import AdapterConfig, config_problems, load_config


def _load(path: str) -> AdapterConfig:
    config = load_config(path)
    settings = config.dashboard
    problems: list[tuple[tuple[str | int, ...], str]] = []
    if not settings.users:
        problems.append((("dashboard", "users"), "list at least one user (name, password-hash, role): nobody "
                                                 "could log in"))
    for key, value in (("tls-certificate", settings.tls_certificate), ("tls-key", settings.tls_key)):
        if value is not None and not os.access(value, os.R_OK):
            problems.append((("dashboard", key), f"{value} is missing or not readable"))
    if problems:
        raise config_problems(path, problems)
    return config


def _build(config: AdapterConfig) -> Runnable:
    from appliance.dashboard.service import Dashboard

    return Dashboard(config)


def _checked(config: AdapterConfig) -> str:
    settings = config.dashboard
    scheme = "https" if settings.tls_certificate else "http"
    return f"({scheme}://{settings.bind_address}:{settings.port}, {len(settings.users)} user(s))"


def _password(args: argparse.Namespace) -> int:
    from appliance.dashboard.auth import hash_password

    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if first != getpass.getpass("Again: "):
            print("the passwords differ", file=sys.stderr)
            return 1
    else:
        first = sys.stdin.readline().rstrip("\n")
    if len(first) < args.min_length:
        print(f"a password needs at least {args.min_length} characters", file=sys.stderr)
        return 1
    print(hash_password(first))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``dashboard`` and ``dashboard-password`` sub-commands."""
    Service("dashboard", "run the web dashboard and result viewer in the foreground", _load, _build,
            _checked).register(sub, __doc__)
    p = sub.add_parser("dashboard-password", help="print the argon2 hash of a password (read from the terminal "
                                                  "or one line of stdin) for dashboard.users")
    p.add_argument("--min-length", type=int, default=8, help="refuse shorter passwords (default 8)")
    p.set_defaults(func=_password)
