"""`AttributionWatch`: warns in the log when too many of a pool's recent calls have no
single visit (the pool is too small, or the hold too short, for the site's traffic).

Fed with every stored call (the writer's ``on_written``); keeps the last
``WINDOW`` of each pool's calls in memory.  It warns once when the share of
unattributed or ambiguous calls passes ``attribution.warn_unattributed_share``
(counted from ``warn_min_calls`` calls on), and says so again when it is back
under the limit.  `pbx-tracker pool status` shows the same figure from the store.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog

from pbx_tracker.attribution.settings import AttributionSettings
from pbx_tracker.attribution.status import share_warning
from pbx_tracker.calls.records import CallRecord

__all__ = ["WINDOW", "AttributionWatch"]

log = structlog.get_logger(__name__)

WINDOW = timedelta(hours=24)
_UNEXPLAINED = ("unattributed", "ambiguous")


@dataclass(slots=True)
class _PoolCalls:
    calls: deque[tuple[datetime, str, bool]] = field(default_factory=deque)
    unexplained: int = 0
    warned: bool = False


class AttributionWatch:
    """The share of each pool's calls over the last day that no single visit explains."""

    def __init__(self, settings: AttributionSettings) -> None:
        self._settings = settings
        self._pools: dict[str, _PoolCalls] = {}

    def share(self, pool: str) -> float | None:
        calls = self._pools.get(pool)
        if calls is None or not calls.calls:
            return None
        return calls.unexplained / len(calls.calls)

    def warned(self, pool: str) -> bool:
        """True while the pool's share is over the limit (warned in the log)."""
        calls = self._pools.get(pool)
        return calls is not None and calls.warned

    def call_written(self, record: CallRecord, new: bool) -> None:
        detail = record.attribution or {}
        pool = detail.get("pool")
        if not isinstance(pool, str) or not new:
            return
        calls = self._pools.setdefault(pool, _PoolCalls())
        unexplained = detail.get("method") in _UNEXPLAINED
        calls.calls.append((record.started_at, record.linkedid, unexplained))
        calls.unexplained += unexplained
        self._forget_before(calls, record.started_at - WINDOW)
        self._judge(pool, calls)

    def _forget_before(self, calls: _PoolCalls, start: datetime) -> None:
        while calls.calls and calls.calls[0][0] < start:
            _, _, unexplained = calls.calls.popleft()
            calls.unexplained -= unexplained

    def _judge(self, pool: str, calls: _PoolCalls) -> None:
        warning = share_warning(pool, calls.unexplained, len(calls.calls), self._settings)
        if warning is not None and not calls.warned:
            log.warning("attribution.low_share", pool=pool, message=warning)
        elif warning is None and calls.warned:
            log.info("attribution.share_recovered", pool=pool, share=self.share(pool))
        calls.warned = warning is not None
