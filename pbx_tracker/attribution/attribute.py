"""Dynamic attribution: a call on a pool number goes to the visit that was shown it.

Run by the call writer inside the transaction that stores the call, so it reads
the stored leases and visits (any daemon's) and a call replayed later (from the
spill file, or `pbx-tracker replay`) is attributed the same way.

For a call on pool number N at time t (the call's start), the candidates are the
visits whose lease on N covered t — from the lease's start to its release, or to
its last keep-alive plus the pool's hold when no release was stored — or ended
within the pool's grace before t.  Then:

- one candidate: ``method`` "session", the call takes the visit's source
  (`channels.channel_of`), UTM tags and ``session_id``; ``confidence`` 1.0 when
  the visit held N at t, 0.8 when only the grace covers it;
- several: ``method`` "ambiguous", no visit is chosen (the pool's own source
  stays), every candidate is listed, ``confidence`` 1/n;
- none: ``method`` "unattributed", the pool's own source.

``attribution`` on the record explains it: the method, confidence, reason in
words, candidates, whether the pool ran out of numbers in that hour, the
attribution model and the visit whose source the call took (``touch_session_id``),
the first and the last touch (``first_touch`` / ``last_touch``: the visitor's
first visit in ``first_touch_days`` and the calling visit, each with its source,
medium and campaign, so a report can apply either model later), and the
caller's earlier visits (same browser) and earlier attributed calls' visits.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from pbx_tracker.attribution.channels import channel_of
from pbx_tracker.attribution.visits import (
    StoredLease,
    Visit,
    get_visit,
    hour_of,
    leases_at,
    stats_table,
    visits_table,
)
from pbx_tracker.calls.records import CallRecord, Direction, format_time
from pbx_tracker.store.models import CallRow

if TYPE_CHECKING:
    from pbx_tracker.attribution.settings import AttributionSettings, NumberPool
    from pbx_tracker.staff import Directory

__all__ = ["GRACE_CONFIDENCE", "Attributor", "static_attribution"]

GRACE_CONFIDENCE = 0.8
EARLIER_LIMIT = 10
_calls = CallRow.__table__


def static_attribution(did: str, source: str, pool: str | None) -> dict[str, Any]:
    """What the config alone says (no database): a tracked number's labels, or a pool
    number's own source until the writer looks at the visits."""
    if pool is None:
        reason = f"tracked number {did} is labelled {source} in the config"
        return {"method": "static", "confidence": 1.0, "reason": reason}
    return {
        "method": "unattributed",
        "confidence": None,
        "pool": pool,
        "reason": f"pool {pool}: visits not looked up (no database)",
    }


@dataclass(frozen=True, slots=True)
class _Candidate:
    lease: StoredLease
    held_at_call: bool
    shown_until: datetime | None

    def describe(self) -> dict[str, Any]:
        return {
            "session_id": self.lease.visit_id,
            "shown_from": format_time(self.lease.started_at),
            "shown_until": None if self.shown_until is None else format_time(self.shown_until),
            "held_at_call": self.held_at_call,
        }


class Attributor:
    """Credits calls on pool numbers to visits, as the module docstring says."""

    def __init__(
        self, attribution: AttributionSettings, pools: Iterable[NumberPool], directory: Directory
    ) -> None:
        self._directory = directory
        self._pools = {pool.name: pool for pool in pools}
        self._model = attribution.model
        self._first_touch = timedelta(days=attribution.first_touch_days)

    def pool_of(self, record: CallRecord) -> NumberPool | None:
        """The pool of the record's DID, for inbound calls."""
        if record.direction is not Direction.INBOUND or not self._pools:
            return None
        labels = self._directory.find_number(record.did)
        return None if labels is None or labels.pool is None else self._pools.get(labels.pool)

    async def attribute(
        self, conn: AsyncConnection, records: Sequence[CallRecord]
    ) -> list[CallRecord]:
        """The records, those on pool numbers credited from the stored visits."""
        done = []
        for record in records:
            pool = self.pool_of(record)
            done.append(record if pool is None else await self._credit(conn, record, pool))
        return done

    async def _credit(
        self, conn: AsyncConnection, record: CallRecord, pool: NumberPool
    ) -> CallRecord:
        assert record.did is not None  # pool_of found the DID
        t = record.started_at
        leases = await leases_at(conn, record.did, t, pool.grace, hold=pool.hold)
        candidates = [_candidate(lease, t, pool.hold) for lease in leases]
        detail: dict[str, Any] = {
            "pool": pool.name,
            "pool_exhausted": await _ran_out(conn, pool.name, t),
            "model": self._model,
            "candidates": [c.describe() for c in candidates],
        }
        if len(candidates) != 1:
            detail.update(_without_visit(record, pool, candidates))
            return record.replace(
                source=pool.source, medium=pool.medium, campaign=pool.campaign, attribution=detail
            )
        return await self._to_visit(conn, record, candidates[0], detail)

    async def _to_visit(
        self, conn: AsyncConnection, record: CallRecord, chosen: _Candidate, detail: dict[str, Any]
    ) -> CallRecord:
        visit = await get_visit(conn, chosen.lease.visit_id)
        if visit is None:  # a lease always has its visit (foreign key); be safe
            detail.update(method="unattributed", confidence=None, reason="the visit is gone")
            return record.replace(attribution=detail)
        earlier = await self._earlier_visits(conn, visit, newest_first=True)
        first = visit
        if earlier:
            first = (await self._earlier_visits(conn, visit, newest_first=False))[0]
        touch = first if self._model == "first_touch" else visit
        channel = channel_of(touch)
        detail.update(
            method="session",
            confidence=1.0 if chosen.held_at_call else GRACE_CONFIDENCE,
            reason=_session_reason(record, chosen, channel.why),
            touch_session_id=touch.id,
            first_touch=_touch(first),
            last_touch=_touch(visit),
            earlier_sessions=[v.id for v in earlier],
            earlier_call_sessions=await _earlier_call_sessions(conn, record),
        )
        return record.replace(
            session_id=visit.id,
            source=channel.source,
            medium=channel.medium,
            campaign=channel.campaign,
            utm_source=touch.utm_source,
            utm_medium=touch.utm_medium,
            utm_campaign=touch.utm_campaign,
            utm_term=touch.utm_term,
            utm_content=touch.utm_content,
            attribution=detail,
        )

    async def _earlier_visits(
        self, conn: AsyncConnection, visit: Visit, *, newest_first: bool
    ) -> list[Visit]:
        """The visitor's visits (same browser) in the first-touch window before this one."""
        if visit.visitor_id is None:
            return []
        v = visits_table.c
        query = (
            select(visits_table)
            .where(
                v.visitor_id == visit.visitor_id,
                v.started_at < visit.started_at,
                v.started_at >= visit.started_at - self._first_touch,
            )
            .order_by(v.started_at.desc() if newest_first else v.started_at)
            .limit(EARLIER_LIMIT)
        )
        return [Visit(**row._asdict()) for row in (await conn.execute(query)).all()]


def _touch(visit: Visit) -> dict[str, Any]:
    """A visit's channel, kept on the call so reports can apply either model later."""
    channel = channel_of(visit)
    return {
        "session_id": visit.id,
        "source": channel.source,
        "medium": channel.medium,
        "campaign": channel.campaign,
    }


def _candidate(lease: StoredLease, t: datetime, hold: timedelta) -> _Candidate:
    end = lease.released_at if lease.released_at is not None else lease.last_seen_at + hold
    return _Candidate(lease, lease.started_at <= t <= end, end)


def _without_visit(
    record: CallRecord, pool: NumberPool, candidates: list[_Candidate]
) -> dict[str, Any]:
    when = format_time(record.started_at)
    if not candidates:
        reason = (
            f"no visit was shown {record.did} at {when} or within "
            f"{pool.grace_minutes:g} min before; the pool's own source is used"
        )
        return {"method": "unattributed", "confidence": None, "reason": reason}
    reason = (
        f"{len(candidates)} visits could have been shown {record.did} at {when}; "
        "none is chosen, the pool's own source is used"
    )
    return {"method": "ambiguous", "confidence": round(1 / len(candidates), 2), "reason": reason}


def _session_reason(record: CallRecord, chosen: _Candidate, why: str) -> str:
    shown = f"{record.did} was shown to visit {chosen.lease.visit_id}"
    if chosen.held_at_call:
        return f"{shown} when the call came ({why})"
    return f"{shown} until just before the call, within the grace ({why})"


async def _ran_out(conn: AsyncConnection, pool: str, t: datetime) -> bool:
    """The pool had no free number for some visit in the hour of ``t``."""
    s = stats_table.c
    query = select(s.exhaustions).where(s.pool == pool, s.hour == hour_of(t))
    return bool((await conn.execute(query)).scalar_one_or_none())


async def _earlier_call_sessions(conn: AsyncConnection, record: CallRecord) -> list[str]:
    """Visits credited with the caller's earlier calls, newest first."""
    if record.caller is None:
        return []
    c = _calls.c
    query = (
        select(c.session_id)
        .where(
            c.caller == record.caller, c.started_at < record.started_at, c.session_id.is_not(None)
        )
        .order_by(c.started_at.desc())
        .limit(EARLIER_LIMIT)
    )
    return list(dict.fromkeys((await conn.execute(query)).scalars()))
