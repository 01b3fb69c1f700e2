"""Clocks the tests move by hand, for the services that take ``clock=`` (no sleeps).

Two kinds serve every service: `SecondsClock` for those that count float seconds
(``time.monotonic`` or ``time.time``: the rate limiter, sessions, the login brake, the
manager board, ring-me) and `DateClock` for those that read aware datetimes (the number
pools); `DateClock.seconds` gives the same moment to a seconds service beside it.
"""

from __future__ import annotations

from datetime import datetime, timedelta


class SecondsClock:
    """Float seconds from ``start`` that stand still until `advance` moves them on."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class DateClock:
    """Aware datetimes from ``start`` that stand still until `advance` moves them on."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def seconds(self) -> float:
        """The same moment as epoch seconds, for a service beside it that counts seconds."""
        return self.now.timestamp()

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
