"""Logging in to the pages: password hashes, sessions, and a brake on password guessing.

- Passwords: the standard library's scrypt with a random 16-byte salt, stored
  as ``scrypt$n$r$p$salt_b64$hash_b64``; checked in constant time.
- Sessions live in the daemon's memory: a random id (the cookie) -> the user's
  name, a CSRF token and when it was last used.  A session unused for
  ``session_minutes`` is over; a restart of the daemon logs everyone out.
- `LoginThrottle`: a client with too many failed logins in a row waits before
  it may try again (bounded memory, its own clock so tests need no sleeps).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from pbx_tracker.web.pages_settings import SCHEME, parse_password_hash

__all__ = [
    "MIN_PASSWORD_CHARS",
    "LoginThrottle",
    "Session",
    "SessionStore",
    "hash_password",
    "same_token",
    "verify_password",
]

Clock = Callable[[], float]
N, R, P = 2**15, 8, 1  # about 50 ms and 32 MiB per check on a current server
SALT_BYTES = 16
KEY_BYTES = 32
MAX_PASSWORD_CHARS = 1024
MIN_PASSWORD_CHARS = 8  # what `pbx-tracker web hash-password` accepts


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, size: int) -> bytes:
    memory = 128 * r * (n + p + 2) + 1024 * 1024
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=memory, dklen=size)


def hash_password(password: str, *, n: int = N, r: int = R, p: int = P) -> str:
    """``scrypt$n$r$p$salt$hash`` for the config (a new random salt each time)."""
    salt = secrets.token_bytes(SALT_BYTES)
    key = _scrypt(password, salt, n, r, p, KEY_BYTES)
    return f"{SCHEME}${n}${r}${p}${_b64(salt)}${_b64(key)}"


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` is the one ``stored`` was made from; False for a bad hash."""
    try:
        n, r, p, salt_b64, key_b64 = parse_password_hash(stored)
        salt = base64.b64decode(salt_b64, validate=True)
        expected = base64.b64decode(key_b64, validate=True)
    except ValueError:
        return False
    if not expected or len(password) > MAX_PASSWORD_CHARS:
        return False
    return hmac.compare_digest(_scrypt(password, salt, n, r, p, len(expected)), expected)


def same_token(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


# --- sessions -------------------------------------------------------------------------


@dataclass(slots=True)
class Session:
    """One logged-in browser: whose it is, its CSRF token, a message for its next page,
    and the stamp of the password it signed in with (`pbx_tracker.web.users`)."""

    id: str
    user: str
    csrf: str
    last_seen: float
    flash: str | None = None
    stamp: str = ""

    def take_flash(self) -> str | None:
        flash, self.flash = self.flash, None
        return flash


class SessionStore:
    """Sessions in memory, over after ``idle_seconds`` without a request."""

    def __init__(
        self, idle_seconds: float, *, clock: Clock = time.monotonic, max_sessions: int = 10_000
    ) -> None:
        self.idle_seconds = idle_seconds
        self._clock = clock
        self._max = max_sessions
        self._sessions: dict[str, Session] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self, user: str, stamp: str = "") -> Session:
        """A new session (a new id: never one the browser had before logging in)."""
        self._prune()
        if len(self._sessions) >= self._max:  # the least recently used one goes
            oldest = min(self._sessions.values(), key=lambda s: s.last_seen)
            del self._sessions[oldest.id]
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        session = Session(token, user, csrf, self._clock(), stamp=stamp)
        self._sessions[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        """The live session with this id (now marked used); None if unknown or over."""
        session = self._sessions.get(session_id or "")
        if session is None:
            return None
        now = self._clock()
        if now - session.last_seen > self.idle_seconds:
            del self._sessions[session.id]
            return None
        session.last_seen = now
        return session

    def drop(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)

    def _prune(self) -> None:
        now = self._clock()
        over = [s.id for s in self._sessions.values() if now - s.last_seen > self.idle_seconds]
        for session_id in over:
            del self._sessions[session_id]


# --- failed logins --------------------------------------------------------------------


@dataclass(slots=True)
class _Failures:
    count: int
    last: float
    locked_until: float = 0.0


class LoginThrottle:
    """After ``max_failures`` failed logins from one client (each within ``window``
    seconds of the one before), it waits ``lockout`` seconds, doubled for each further
    failure up to ``max_lockout``.  A successful login clears the count."""

    def __init__(
        self,
        *,
        max_failures: int = 5,
        window: float = 900.0,
        lockout: float = 60.0,
        max_lockout: float = 900.0,
        clock: Clock = time.monotonic,
        max_clients: int = 10_000,
    ) -> None:
        self.max_failures = max_failures
        self.window = window
        self.lockout = lockout
        self.max_lockout = max_lockout
        self._clock = clock
        self._max_clients = max_clients
        self._clients: dict[str, _Failures] = {}

    def retry_after(self, client: str) -> int:
        """Seconds the client must wait before trying again (0: it may try now)."""
        failures = self._clients.get(client)
        if failures is None:
            return 0
        wait = failures.locked_until - self._clock()
        return max(0, int(wait + 0.999))

    def failed(self, client: str) -> int:
        """Count a failed login; the seconds the client must now wait (0: none)."""
        now = self._clock()
        failures = self._clients.get(client)
        if failures is None or now - failures.last > self.window:
            self._make_room(now)
            failures = self._clients[client] = _Failures(0, now)
        failures.count += 1
        failures.last = now
        over = failures.count - self.max_failures
        if over >= 0:
            failures.locked_until = now + min(self.max_lockout, self.lockout * 2 ** min(over, 20))
        return self.retry_after(client)

    def succeeded(self, client: str) -> None:
        self._clients.pop(client, None)

    def _make_room(self, now: float) -> None:
        if len(self._clients) < self._max_clients:
            return
        stale = [c for c, f in self._clients.items() if now - f.last > self.window]
        for client in stale or [min(self._clients, key=lambda c: self._clients[c].last)]:
            del self._clients[client]
