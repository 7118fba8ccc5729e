"""The job store's connection: SQLite (one host) or PostgreSQL (a fleet), behind one small interface.

Every query of the job store is written once, in the SQL both engines share, with ``?`` placeholders
and these tokens, which :meth:`Database.sql` expands for the engine:

* ``{now}``: the database's clock in UNIX seconds. Leases and not-before times are compared with
  it, so hosts whose clocks differ still agree on when a lease expired.
* ``{real}``: a float column type (SQLite ``REAL``; PostgreSQL ``DOUBLE PRECISION``, as its
  ``REAL`` has 24 bits and would round timestamps to minutes).
* ``{row_id}``: the column list's leading ``id`` column of an append-only table (PostgreSQL
  ``BIGSERIAL``; SQLite has its implicit ``rowid``) and ``{rowid}`` the name to read it by.
* ``{skip_locked}``: ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so concurrent claims pass over rows
  another transaction holds instead of waiting for them; nothing on SQLite, where ``BEGIN
  IMMEDIATE`` already serialises every writer.
* ``{lock_row}``: ``FOR UPDATE`` on PostgreSQL (wait for and lock the row), nothing on SQLite.

A transaction (:meth:`Database.transaction`) is committed or rolled back as a whole; errors of
either driver leave it as :class:`StoreError` (the driver's error is its ``__cause__``).
"""

from __future__ import annotations

import re
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

#: URL schemes that select PostgreSQL (``postgresql://user@host:5432/appliance``).
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


class StoreError(RuntimeError):
    """The job store could not do what was asked: database unreachable, disk full, locked too long,
    a constraint failed ... The driver's own error is ``__cause__``."""


class Cursor:
    """What a statement returned: rows and how many rows it changed."""

    def __init__(self, rows: list[tuple[Any, ...]], rowcount: int) -> None:
        self.rows = rows
        self.rowcount = rowcount

    def fetchone(self) -> tuple[Any, ...] | None:
        """The first row, or None."""
        return self.rows[0] if self.rows else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        """Every row."""
        return self.rows


class Transaction:
    """Statements inside one transaction of ``database`` (see :meth:`Database.transaction`)."""

    def __init__(self, database: Database, raw: Any) -> None:
        self._database = database
        self._raw = raw
        self.dialect = database.dialect

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Cursor:
        """Run one statement (``?`` placeholders, tokens as in the module docstring)."""
        return self._database._execute(self._raw, self._database.sql(sql), tuple(args))


class Database(ABC):
    """One connection, shared by a process's threads (a lock keeps their transactions apart)."""

    #: ``sqlite`` or ``postgresql``
    dialect: str
    #: Where it is, for messages: a file path, or the URL without its password.
    where: str

    def __init__(self) -> None:
        self._lock = threading.RLock()

    @property
    def shared(self) -> bool:
        """Whether several hosts can use it (PostgreSQL): then no role needs to run alone."""
        return self.dialect == "postgresql"

    def sql(self, text: str) -> str:
        """``text`` with the tokens and placeholders of this engine."""
        return _translate(text, self.dialect)

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """One transaction: committed when the block ends, rolled back when it raises."""
        with self._lock:
            raw = self._begin()
            try:
                yield Transaction(self, raw)
                self._commit(raw)
            except BaseException as exc:
                self._rollback(raw)
                if self._is_driver_error(exc):
                    raise StoreError(f"job store {self.where}: {exc}") from exc
                raise

    def read(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of one query, in a transaction of its own."""
        with self.transaction() as tx:
            return tx.execute(sql, args).fetchall()

    @abstractmethod
    def close(self) -> None:
        """Close the connection; the object is unusable afterwards."""

    @abstractmethod
    def _begin(self) -> Any: ...

    @abstractmethod
    def _commit(self, raw: Any) -> None: ...

    @abstractmethod
    def _rollback(self, raw: Any) -> None: ...

    @abstractmethod
    def _execute(self, raw: Any, sql: str, args: tuple[Any, ...]) -> Cursor: ...

    @abstractmethod
    def _is_driver_error(self, exc: BaseException) -> bool: ...


_TOKENS = {
    "sqlite": {
        "now": "((julianday('now') - 2440587.5) * 86400.0)",
        "real": "REAL",
        "row_id": "",
        "rowid": "rowid",
        "skip_locked": "",
        "lock_row": "",
    },
    "postgresql": {
        "now": "EXTRACT(EPOCH FROM clock_timestamp())::DOUBLE PRECISION",
        "real": "DOUBLE PRECISION",
        "row_id": "id BIGSERIAL PRIMARY KEY,",
        "rowid": "id",
        "skip_locked": "FOR UPDATE SKIP LOCKED",
        "lock_row": "FOR UPDATE",
    },
}


@lru_cache(maxsize=512)
def _translate(text: str, dialect: str) -> str:
    tokens = _TOKENS[dialect]
    text = re.sub(r"\{(\w+)\}", lambda m: tokens[m.group(1)], text)
    return text.replace("?", "%s") if dialect == "postgresql" else text


class SqliteDatabase(Database):
    """A SQLite file in WAL mode with ``synchronous=FULL`` (a committed row survives power loss,
    which the adapter's acknowledgement rule relies on). Every transaction is ``BEGIN IMMEDIATE``:
    it takes the write lock up front, so read-then-write (claiming) cannot race another process.
    ``busy_timeout`` (seconds) is how long it waits for another process's transaction."""

    dialect = "sqlite"

    def __init__(self, path: Path | str, busy_timeout: float = 10.0) -> None:
        super().__init__()
        self.path = Path(path)
        self.where = str(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # isolation_level=None: we issue BEGIN ourselves, so a transaction is exactly what we say.
            self._db = sqlite3.connect(str(self.path), timeout=busy_timeout, isolation_level=None,
                                       check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
        except sqlite3.Error as exc:
            raise StoreError(f"job store {self.where}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _begin(self) -> sqlite3.Connection:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(f"job store {self.where}: {exc}") from exc
        return self._db

    def _commit(self, raw: sqlite3.Connection) -> None:
        # Inside the caller's try: a COMMIT that fails (disk full, I/O error, a deferred
        # constraint) must roll back too, or the connection would keep the write lock.
        raw.execute("COMMIT")

    def _rollback(self, raw: sqlite3.Connection) -> None:
        if raw.in_transaction:  # SQLite rolls some failures back by itself
            raw.execute("ROLLBACK")

    def _execute(self, raw: sqlite3.Connection, sql: str, args: tuple[Any, ...]) -> Cursor:
        cur = raw.execute(sql, args)
        return Cursor(cur.fetchall() if cur.description else [], cur.rowcount)

    def _is_driver_error(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.Error)


class PostgresDatabase(Database):
    """A PostgreSQL database through psycopg 3, at ``url`` (a libpq connection URL; a password may
    also come from ``~/.pgpass`` or ``PGPASSWORD``). Transactions run at READ COMMITTED; claims
    lock the rows they take (``FOR UPDATE SKIP LOCKED``). A broken connection (server restart,
    network) is reopened at the next transaction. ``connect_timeout`` is in seconds."""

    dialect = "postgresql"

    def __init__(self, url: str, connect_timeout: float = 10.0) -> None:
        super().__init__()
        import psycopg  # only hosts that use PostgreSQL need the driver loaded

        self._psycopg = psycopg
        self.url = url
        self.where = redact(url)
        self._timeout = connect_timeout
        self._conn: Any = None
        with self._lock:
            self._connect()

    def _connect(self) -> Any:
        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            return self._conn
        if self._conn is not None:
            self._conn.close()
        try:
            self._conn = self._psycopg.connect(self.url, connect_timeout=max(1, int(self._timeout)),
                                               application_name="appliance")
        except self._psycopg.Error as exc:
            self._conn = None
            raise StoreError(f"job store {self.where}: {exc}".strip()) from exc
        return self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()

    def _begin(self) -> Any:
        conn = self._connect()
        return conn.cursor()  # psycopg opens the transaction with the first statement

    def _commit(self, raw: Any) -> None:
        raw.connection.commit()
        raw.close()

    def _rollback(self, raw: Any) -> None:
        conn = raw.connection
        if not conn.closed:
            try:
                conn.rollback()
            except self._psycopg.Error:
                conn.close()  # reopened at the next transaction
        raw.close()

    def _execute(self, raw: Any, sql: str, args: tuple[Any, ...]) -> Cursor:
        raw.execute(sql, args, prepare=False)
        return Cursor(raw.fetchall() if raw.description else [], raw.rowcount)

    def _is_driver_error(self, exc: BaseException) -> bool:
        return isinstance(exc, self._psycopg.Error)


def redact(url: str) -> str:
    """``url`` without its password (for logs and messages)."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def is_url(target: str | Path) -> bool:
    """Whether ``target`` is a PostgreSQL URL rather than a SQLite path."""
    return isinstance(target, str) and target.startswith(POSTGRES_SCHEMES)


def open_database(target: str | Path) -> Database:
    """PostgreSQL for a ``postgresql://`` URL, else the SQLite file at ``target``."""
    if is_url(target):
        return PostgresDatabase(str(target))
    return SqliteDatabase(target)
