"""Passwords of the pages' users: scrypt hashes, and tokens compared in constant time.

Passwords use the standard library's scrypt with a random 16-byte salt, stored
as ``scrypt$n$r$p$salt_b64$hash_b64``, and are checked in constant time.
Sessions and the brake on password guessing are in the database, shared by
every daemon (`pbx_tracker.web.sessions`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from pbx_tracker.web.settings import SCHEME, parse_password_hash

__all__ = [
    "MIN_PASSWORD_CHARS",
    "hash_password",
    "same_token",
    "verify_password",
]

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
