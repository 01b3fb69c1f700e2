"""Settings of the web room: the HTTP server (``http:``) and the pages' users (``web:``).

``http:``: where the server of the website's visits API (and the pages) listens
and whom it answers (`HttpSettings`).

``web:``: who may log in to the pages for people, and how (`WebSettings`).
Passwords are stored as scrypt hashes made by ``pbx-tracker web hash-password``
(`pbx_tracker.web.auth.hash_password`); a hash that cannot be read is a config
problem (its value is never shown).  A user with role manager sees the
callbacks of their ``extension``, so it must be one of ``managers:``
(`web_user_problems`, a check across sections run where the config is read).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, SecretStr, model_validator

from pbx_tracker.config_fields import ConfigModel, Extension, NonEmptyStr, problem

__all__ = [
    "HttpSettings",
    "Origin",
    "RateLimitSettings",
    "Role",
    "WebSettings",
    "WebUser",
    "parse_password_hash",
    "web_user_problems",
]

_ORIGIN_MESSAGE = "must be a site origin such as https://example.ru (scheme, host, port only)"


def _origin(value: Any) -> str:
    """``https://Example.ru/`` as ``https://example.ru``; a clear message otherwise."""
    if not isinstance(value, str):
        raise problem("origin", _ORIGIN_MESSAGE)
    text = value.strip().rstrip("/")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise problem("origin", _ORIGIN_MESSAGE) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise problem("origin", _ORIGIN_MESSAGE)
    if parts.path or parts.query or parts.fragment or parts.username or parts.password:
        raise problem("origin", _ORIGIN_MESSAGE)
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + ("" if port is None else f":{port}")


Origin = Annotated[str, BeforeValidator(_origin)]
MIN_TOKEN_LENGTH = 16


def _long_token(value: SecretStr) -> SecretStr:
    if len(value.get_secret_value()) < MIN_TOKEN_LENGTH:
        raise problem("token", f"must be at least {MIN_TOKEN_LENGTH} characters")
    return value


class RateLimitSettings(ConfigModel):
    """Requests a client may make: ``per_minute`` on average, ``burst`` at once."""

    per_minute: float = Field(default=60.0, gt=0)
    burst: int = Field(default=20, ge=1)


class HttpSettings(ConfigModel):
    """Where the HTTP server listens and whom it answers.  ``status_token``: the bearer
    token of the pool status endpoint (off without one)."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    allowed_origins: list[Origin] = Field(default_factory=list)
    rate_limit: RateLimitSettings = Field(default_factory=RateLimitSettings)
    max_body_bytes: int = Field(default=16 * 1024, ge=256, le=1024 * 1024)
    trust_proxy: bool = False
    status_token: Annotated[SecretStr, AfterValidator(_long_token)] | None = None

    def allows_origin(self, origin: str) -> bool:
        """True when the browser's ``Origin`` header names a configured site."""
        try:
            return _origin(origin) in self.allowed_origins
        except ValueError:
            return False


# --- the pages' users (``web:``) ---------------------------------------------------

Role = Literal["manager", "supervisor", "marketer", "admin"]
SCHEME = "scrypt"
MAX_N = 2**20  # scrypt cost ceilings: a hash from the config must not exhaust the machine
MAX_R = 32
MAX_P = 16
_HASH_MESSAGE = "must be the output of `pbx-tracker web hash-password` (scrypt$n$r$p$salt$hash)"
_MAX_LISTED = 10  # extensions named in a problem line
_EXTENSION = re.compile(r"\d{1,10}")  # as `config_fields.Extension` takes it


def parse_password_hash(value: str) -> tuple[int, int, int, str, str]:
    """(n, r, p, salt, hash) of ``scrypt$n$r$p$salt_b64$hash_b64``; ValueError otherwise."""
    parts = value.strip().split("$")
    if len(parts) != 6 or parts[0] != SCHEME:
        raise ValueError(_HASH_MESSAGE)
    try:
        n, r, p = (int(part) for part in parts[1:4])
    except ValueError:
        raise ValueError(_HASH_MESSAGE) from None
    if not (1 < n <= MAX_N and n & (n - 1) == 0 and 1 <= r <= MAX_R and 1 <= p <= MAX_P):
        raise ValueError(f"{_HASH_MESSAGE}; n a power of 2 up to {MAX_N}, r <= 32, p <= 16")
    if not parts[4] or not parts[5]:
        raise ValueError(_HASH_MESSAGE)
    return n, r, p, parts[4], parts[5]


def _password_hash(value: str) -> str:
    try:
        parse_password_hash(value)
    except ValueError as error:
        raise problem("password_hash", str(error)) from None
    return value.strip()


class WebUser(ConfigModel):
    """One person who logs in to the pages: a manager sees their callbacks (by
    ``extension``), a supervisor the live board and everyone's callbacks, a marketer
    the reports, an admin everything (`pbx_tracker.web.roles`)."""

    name: NonEmptyStr
    role: Role
    extension: Extension | None = None
    password_hash: Annotated[str, AfterValidator(_password_hash)]

    @model_validator(mode="after")
    def _manager_has_extension(self) -> WebUser:
        if self.role == "manager" and self.extension is None:
            raise problem("extension", "a manager needs the extension their callbacks are for")
        return self


class WebSettings(ConfigModel):
    """The pages' users listed in the config (more may be kept in the database,
    `pbx_tracker.web.users`), and how sessions behave."""

    users: list[WebUser] = Field(default_factory=list)
    session_minutes: int = Field(default=480, ge=1, le=30 * 24 * 60)
    cookie_secure: bool = True

    @model_validator(mode="after")
    def _unique_names(self) -> WebSettings:
        seen: set[str] = set()
        for user in self.users:
            if user.name in seen:
                raise problem("name", f"user {user.name!r} is listed twice")
            seen.add(user.name)
        return self

    def user(self, name: str) -> WebUser | None:
        return next((user for user in self.users if user.name == name), None)


def web_user_problems(raw: Mapping[str, Any]) -> list[str]:
    """Problems across sections of the unvalidated config: a ``web.users`` entry with
    role manager whose extension is no manager's in ``managers:``.

    ``web.users[1].extension: user 'anna' is a manager with extension 105, which is
    not in managers (their extensions: 101, 102)``.  Entries the models refuse anyway
    (no extension, not digits, another role written wrong) are left to them.
    """
    web = raw.get("web")
    users = web.get("users") if isinstance(web, Mapping) else None
    if not isinstance(users, list):
        return []
    managers = raw.get("managers")
    known = [
        str(manager["extension"]).strip()
        for manager in (managers if isinstance(managers, list) else [])
        if isinstance(manager, Mapping) and isinstance(manager.get("extension"), str | int)
    ]
    problems = []
    for index, user in enumerate(users):
        if not isinstance(user, Mapping) or user.get("role") != "manager":
            continue
        extension = user.get("extension")
        if not isinstance(extension, str) or not _EXTENSION.fullmatch(extension):
            continue
        if extension not in known:
            problems.append(
                f"web.users[{index}].extension: user {user.get('name')!r} is a manager with "
                f"extension {extension}, which is not in managers ({_known(known)})"
            )
    return problems


def _known(extensions: list[str]) -> str:
    unique = list(dict.fromkeys(extensions))
    if not unique:
        return "it lists none"
    shown = ", ".join(unique[:_MAX_LISTED])
    more = f" and {len(unique) - _MAX_LISTED} more" if len(unique) > _MAX_LISTED else ""
    return f"their extensions: {shown}{more}"
