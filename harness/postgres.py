"""A throw-away PostgreSQL server for tests and benchmarks: Debian's ``postgresql`` package, run from
its own data folder on a free loopback port, as an unprivileged user, stopped by PID.

``PostgresServer().start()`` takes about a second (``initdb --no-sync``; the server runs with
``fsync=off``: tests kill the appliance's processes, never the database, and a throw-away cluster
needs no durability). Each test gets a database of its own (:meth:`PostgresServer.create_database`).
Root cannot run PostgreSQL, so as root the server runs as ``nobody`` from a folder it owns.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

#: The user tests connect as (trust authentication on loopback only).
USER = "appliance"


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL server binaries are not installed, or the server did not start."""


def bin_dir() -> Path:
    """The newest installed PostgreSQL's binaries (``/usr/lib/postgresql/<version>/bin``)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(Path(p).parts[-3]))
    if not found:
        raise PostgresUnavailable("PostgreSQL server not installed (apt-get install postgresql)")
    return Path(found[-1]).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """One ``postgres`` process; ``max_connections`` as the fleet tests need (each appliance
    process holds one connection)."""

    def __init__(self, max_connections: int = 200) -> None:
        self.max_connections = max_connections
        self.port = 0
        self.folder: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self._user: str | None = "nobody" if os.geteuid() == 0 else None

    def url(self, database: str = "postgres") -> str:
        """The libpq URL of ``database`` on this server."""
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str) -> None:
        done = subprocess.run(args, capture_output=True, text=True, user=self._user, timeout=120)
        if done.returncode != 0:
            raise PostgresUnavailable(f"{' '.join(args[:2])}: {done.stdout}{done.stderr}")

    def start(self, timeout: float = 30.0) -> PostgresServer:
        """initdb a fresh cluster and start the server; return once it accepts connections."""
        binaries = bin_dir()
        self.folder = Path(tempfile.mkdtemp(prefix="appliance-pg-"))
        if self._user is not None:  # root: the folder belongs to the user the server runs as
            entry = pwd.getpwnam(self._user)
            os.chown(self.folder, entry.pw_uid, entry.pw_gid)
        data = self.folder / "data"
        self._run(str(binaries / "initdb"), "-D", str(data), "-U", USER, "--auth=trust", "--no-sync",
                  "-E", "UTF8", "--locale=C")
        self.port = _free_port()
        log = (self.folder / "postgres.log").open("ab")
        try:
            self.proc = subprocess.Popen(
                [str(binaries / "postgres"), "-D", str(data), "-p", str(self.port), "-k", str(self.folder),
                 "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
                 "-c", "full_page_writes=off", "-c", f"max_connections={self.max_connections}"],
                stdout=log, stderr=subprocess.STDOUT, user=self._user, start_new_session=True)
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while not self._accepting():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise PostgresUnavailable(f"postgres did not start: {self.log()[-2000:]}")
            time.sleep(0.05)
        return self

    def _accepting(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.url(), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def create_database(self, name: str | None = None) -> str:
        """A new, empty database; return its URL."""
        import psycopg

        name = name or f"t_{secrets.token_hex(6)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def log(self) -> str:
        """The server's log so far."""
        path = self.folder / "postgres.log" if self.folder else None
        return path.read_text(errors="replace") if path and path.exists() else ""

    def stop(self) -> None:
        """Fast shutdown by PID (SIGINT), SIGKILL after 20 s; then remove the cluster."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None
        if self.folder is not None:
            with contextlib.suppress(OSError):
                shutil.rmtree(self.folder)
            self.folder = None

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
