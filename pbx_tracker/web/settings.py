"""Settings of the HTTP server for the website's visits API (``http:`` in the config)."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, SecretStr

from pbx_tracker.config_fields import ConfigModel, problem

__all__ = ["HttpSettings", "Origin", "RateLimitSettings"]

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
