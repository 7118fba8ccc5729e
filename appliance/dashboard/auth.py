"""Who is logged in and what they may do: argon2 passwords, server-side sessions, roles, CSRF.

* Passwords are checked against the argon2 hashes in ``dashboard.users`` (argon2-cffi); an unknown
  user costs the same hash check, so timing does not tell which names exist.
* A session is a random token in an ``HttpOnly``, ``SameSite=Strict`` cookie (``Secure`` over
  HTTPS), kept in this process's memory: a restart logs everyone out. It ends after
  ``dashboard.session-minutes`` without a request, or at logout.
* Every state-changing request carries the session's CSRF token in a form field, compared in
  constant time; a request whose ``Origin`` names another site is refused as well.
* Roles are ordered ``viewer < operator < admin``: :func:`allowed` says whether a role reaches
  another.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from appliance.settings import ROLES, DashboardUser

SESSION_COOKIE = "appliance_session"
LOGIN_COOKIE = "appliance_login"  # the login form's own CSRF token (there is no session yet)

_HASHER = PasswordHasher()
# Checked when the name is unknown, so that a wrong name takes as long as a wrong password.
_DUMMY_HASH = _HASHER.hash(secrets.token_hex(16))


def allowed(role: str, needed: str) -> bool:
    """Whether ``role`` may do what ``needed`` may (viewer < operator < admin)."""
    return ROLES.index(role) >= ROLES.index(needed)


def same_token(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a submitted token with the expected one."""
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def new_token() -> str:
    """A fresh random token (32 bytes, URL-safe)."""
    return secrets.token_urlsafe(32)


@dataclass
class Session:
    """A logged-in user: ``csrf`` is the token every form of this session carries."""

    user: str
    role: str
    csrf: str
    expires: float  # time.monotonic() seconds
    token: str = field(repr=False, default="")
    notes: list[str] = field(default_factory=list)  #: messages for the next page (outcomes of actions)


class Sessions:
    """Users from the configuration and the sessions of this process (thread-safe).

    ``lifetime`` is seconds of inactivity after which a session ends.
    """

    def __init__(self, users: tuple[DashboardUser, ...], lifetime: float) -> None:
        self._users = {u.name: u for u in users}
        self._lifetime = lifetime
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def login(self, name: str, password: str) -> Session | None:
        """A new session for ``name`` if ``password`` matches its hash, else None."""
        user = self._users.get(name)
        try:
            _HASHER.verify(user.password_hash if user else _DUMMY_HASH, password)
        except (VerificationError, InvalidHashError):
            return None
        if user is None:
            return None
        token = new_token()
        session = Session(user.name, user.role, new_token(), time.monotonic() + self._lifetime, token)
        with self._lock:
            self._expire()
            self._sessions[token] = session
        return session

    def get(self, token: str | None) -> Session | None:
        """The live session of ``token`` (its lifetime restarts), or None."""
        if not token:
            return None
        with self._lock:
            session = self._sessions.get(token)
            if session is None:
                return None
            now = time.monotonic()
            if session.expires < now:
                del self._sessions[token]
                return None
            session.expires = now + self._lifetime
            return session

    def alive(self, token: str | None) -> bool:
        """Whether ``token``'s session is live, without restarting its lifetime (an open page's
        event stream must not keep an idle login alive)."""
        with self._lock:
            session = self._sessions.get(token or "")
            return session is not None and session.expires >= time.monotonic()

    def logout(self, token: str | None) -> None:
        """End the session of ``token`` (if any)."""
        with self._lock:
            self._sessions.pop(token or "", None)

    def _expire(self) -> None:
        now = time.monotonic()
        for token in [t for t, s in self._sessions.items() if s.expires < now]:
            del self._sessions[token]


def hash_password(password: str) -> str:
    """The argon2id hash of ``password`` for ``dashboard.users[].password-hash``."""
    return _HASHER.hash(password)
