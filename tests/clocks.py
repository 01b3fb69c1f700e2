"""A clock the tests move by hand, for the services that take ``clock=`` (no sleeps)."""

from __future__ import annotations

from datetime import datetime, timedelta


class DateClock:
    """Aware datetimes from ``start``; `advance` moves it on."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
