"""What the service commands (``adapter``, ``worker``, ``exporter``) share: their options, loading
and checking the configuration, logging, and stopping on SIGTERM/SIGINT.

Exit status 2: the configuration (or a workflow it uses) is invalid, each problem printed as
``FILE:LINE: key.path: message``; otherwise the service's own status.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from appliance.cli import logs
from appliance.settings import SettingsError, StorageConfig

T = TypeVar("T")


class Runnable(Protocol):
    """A service object: :meth:`run` serves until :meth:`request_stop` (signal-safe)."""

    def request_stop(self) -> None: ...

    def run(self) -> int: ...


@dataclass(frozen=True)
class Service(Generic[T]):
    """One service command.

    Args:
        name: the sub-command, e.g. ``adapter``.
        help: one line for ``appliance --help``.
        load: the configuration file's path -> what the service needs; raises SettingsError.
        build: builds the service from it (imported lazily: ``--check`` needs no DICOM stack).
        checked: the line ``--check`` prints after ``FILE: OK``.
        storage: the loaded configuration's storage settings: ``--check`` then also reports the
            job store's schema version (exit 1 when it cannot be read or is newer than this code).
    """

    name: str
    help: str
    load: Callable[[str], T]
    build: Callable[[T], Runnable]
    checked: Callable[[T], str] = lambda _: ""
    storage: Callable[[T], StorageConfig] = lambda loaded: loaded.storage  # type: ignore[attr-defined]

    def register(self, sub: argparse._SubParsersAction[argparse.ArgumentParser], description: str | None) -> None:
        """Add the sub-command with ``--config``, ``--log-level`` and ``--check``."""
        p = sub.add_parser(self.name, help=self.help, description=description)
        p.add_argument("--config", required=True, help="the services' YAML configuration file")
        p.add_argument("--log-level", default="INFO", choices=logs.LEVELS)
        p.add_argument("--check", action="store_true", help="validate the configuration, then exit")
        p.set_defaults(func=self._main)

    def _main(self, args: argparse.Namespace) -> int:
        if not args.check:
            logs.configure(args.log_level)
        try:
            loaded = self.load(args.config)
        except SettingsError as exc:
            print(f"appliance {self.name}: invalid configuration\n{exc}", file=sys.stderr)
            return 2
        from appliance.jobs import StoreError

        if args.check:
            print(f"{args.config}: OK {self.checked(loaded)}".rstrip())
            from appliance.jobs.schema import status

            try:
                print(status(self.storage(loaded).job_store))
            except StoreError as exc:
                print(f"appliance {self.name}: {exc}", file=sys.stderr)
                return 1
            return 0
        from appliance.systemd import on_stop_signals

        try:
            service = self.build(loaded)
            on_stop_signals(service.request_stop)
            return service.run()
        except StoreError as exc:  # systemd restarts the unit; the database may be back by then
            logging.getLogger(f"appliance.{self.name}").error("%s", exc)
            return 1
