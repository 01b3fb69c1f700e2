"""Logging in to Asterisk: what the listener reads of the AMI settings, the rejected
login, and keeping the secret out of panoramisk's own log records."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from pbx_tracker.logging import SecretFilter, SecretRedactor

__all__ = ["AmiConnectionSettings", "AmiLoginError", "SecretValue", "protect_secret"]

_PANORAMISK_LOGGERS = ("panoramisk", "panoramisk.ami_protocol", "panoramisk.manager")


class SecretValue(Protocol):
    def get_secret_value(self) -> str: ...


class AmiConnectionSettings(Protocol):
    """What the listener reads from `ami.settings.AmiSettings` (times in seconds)."""

    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def username(self) -> str: ...
    @property
    def secret(self) -> SecretValue: ...
    @property
    def events(self) -> str | Sequence[str]: ...
    @property
    def connect_timeout(self) -> float: ...
    @property
    def ping_interval(self) -> float: ...
    @property
    def ping_timeout(self) -> float: ...
    @property
    def reconnect_initial(self) -> float: ...
    @property
    def reconnect_max(self) -> float: ...


class AmiLoginError(Exception):
    """Asterisk rejected our username/secret: fatal, retrying will not help."""

    def __init__(self, username: str, host: str, port: int) -> None:
        super().__init__(f"AMI login rejected for user {username} at {host}:{port}")
        self.username = username


_PROTECTED: set[str] = set()


def protect_secret(secret: str) -> None:
    """Redact *secret* from panoramisk's own log records, whatever handler gets them.

    `pbx_tracker.logging` redacts on its handler too; this filter sits on the
    loggers themselves, so it also covers handlers added elsewhere (pytest's
    caplog, a debugging `basicConfig`).
    """
    if not secret or secret in _PROTECTED:
        return
    _PROTECTED.add(secret)
    redacting = SecretFilter(SecretRedactor([secret]))
    for name in _PANORAMISK_LOGGERS:
        logging.getLogger(name).addFilter(redacting)
