"""The outbox table: one row per event to deliver to one *target* (the CRM webhook,
Bitrix24, amoCRM, Telegram).  A stored call's events are written in the transaction
that stores the call, so no stored call is ever without its events (and no event
is for a call that was not stored); live events (a call ringing, answered) and
reminders are written as they happen (`enqueue_event`).

A row's ``idempotency_key`` (``node:linkedid:<hash of the payload>``, with
``<target>:`` before it for targets other than the webhook) is the same on
every try; storing the same call again with the same content adds nothing, a
changed call adds a ``call.updated`` event.  Events of one call are delivered
to each target in the order they were written: a row is due only when no
earlier row of the same call and target is still waiting.  Rows are claimed
with a conditional update, so several daemons on one database never send a
row at once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, and_, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import aliased

from pbx_tracker.calls.records import CallRecord, Direction
from pbx_tracker.store.engine import dialect_insert
from pbx_tracker.store.models import CrmOutboxRow

__all__ = [
    "WEBHOOK",
    "Delivery",
    "claim",
    "due_deliveries",
    "enqueue_calls",
    "enqueue_event",
    "mark_delivered",
    "mark_failed",
    "mark_retry",
    "outbox_table",
    "pending_count",
]

outbox_table = cast(Table, CrmOutboxRow.__table__)
WEBHOOK = "webhook"
# an outbound call goes to a target only when it carries one of these (a click-to-call
# the CRM itself started, which it waits to see finished)
OUTBOUND_MARKS = {"bitrix24": "CALLBACK_CRM_CALL_ID"}


@dataclass(frozen=True, slots=True)
class Delivery:
    id: int
    target: str
    call_key: str
    event: str
    idempotency_key: str
    payload: dict[str, Any]
    created_at: datetime
    attempts: int


def call_payload(record: CallRecord, event: str, key: str) -> dict[str, Any]:
    """What the CRM receives: the event, its delivery id, and the call record."""
    return {"event": event, "delivery": key, "call": record.to_json()}


async def enqueue_calls(
    conn: AsyncConnection,
    saved: Sequence[tuple[CallRecord, bool]],
    now: datetime,
    *,
    decision: str | None = None,
    targets: Sequence[str] = (WEBHOOK,),
) -> int:
    """Add an event for each inbound call just stored (``True``: new) for each of
    ``targets``; the number added.  An outbound call goes only to the targets that
    started it (`OUTBOUND_MARKS`).

    ``decision``: the call was changed by someone's decision at ``now`` (``spam``: a
    manager marked it or undid the mark).  Its ``call.updated`` is a new event even
    when the call is as it was once before (a mark undone)."""
    rows = []
    for record, new in saved:
        for target in targets:
            if record.direction is Direction.INBOUND or _started_by(record, target):
                rows.append(_call_row(record, new, now, decision, target))
    return await _insert(conn, rows)


def _started_by(record: CallRecord, target: str) -> bool:
    mark = OUTBOUND_MARKS.get(target)
    return mark is not None and bool(record.variables.get(mark))


def _call_row(
    record: CallRecord, new: bool, now: datetime, decision: str | None, target: str
) -> dict[str, Any]:
    event = "call.finished" if new else "call.updated"
    call_key = f"{record.node}:{record.linkedid}"
    content = json.dumps(record.to_json(), sort_keys=True, ensure_ascii=False)
    digest = hashlib.sha256(content.encode()).hexdigest()[:16]
    when = "" if decision is None else f"{decision}@{now:%Y%m%dT%H%M%S%f}:"
    key = f"{call_key}:{when}{digest}"
    if target != WEBHOOK:
        key = f"{target}:{key}"
    return _row(target, call_key, event, key, call_payload(record, event, key), now)


def _row(
    target: str, call_key: str, event: str, key: str, payload: dict[str, Any], now: datetime
) -> dict[str, Any]:
    return {
        "target": target,
        "call_key": call_key,
        "event": event,
        "idempotency_key": key,
        "payload": payload,
        "created_at": now,
        "next_attempt_at": now,
        "attempts": 0,
    }


async def enqueue_event(
    conn: AsyncConnection,
    *,
    target: str,
    call_key: str,
    kind: str,
    key: str,
    payload: dict[str, Any],
    now: datetime,
) -> bool:
    """Add one event for ``target`` (a live call event, a reminder); False when an event
    with this idempotency ``key`` is there already (it is added once)."""
    return await _insert(conn, [_row(target, call_key, kind, key, payload, now)]) == 1


async def _insert(conn: AsyncConnection, rows: list[dict[str, Any]]) -> int:
    if not rows:
        return 0
    # counted from RETURNING: rowcount is not reliable for this on every driver
    statement = (
        dialect_insert(conn)(outbox_table)
        .values(rows)
        .on_conflict_do_nothing(index_elements=[outbox_table.c.idempotency_key])
        .returning(outbox_table.c.id)
    )
    return len((await conn.execute(statement)).all())


def _pending(table: Any) -> Any:
    return and_(table.c.delivered_at.is_(None), table.c.failed_at.is_(None))


async def due_deliveries(
    conn: AsyncConnection, now: datetime, limit: int, target: str = WEBHOOK
) -> list[Delivery]:
    """Rows of ``target`` to send now, oldest first: due, not claimed, and first of their
    call."""
    o = outbox_table.c
    earlier = aliased(outbox_table)
    waiting_before = exists().where(
        earlier.c.target == o.target,
        earlier.c.call_key == o.call_key,
        earlier.c.id < o.id,
        _pending(earlier),
    )
    query = (
        select(outbox_table)
        .where(
            o.target == target,
            _pending(outbox_table),
            o.next_attempt_at <= now,
            or_(o.claimed_until.is_(None), o.claimed_until < now),
            ~waiting_before,
        )
        .order_by(o.id)
        .limit(limit)
    )
    return [
        Delivery(
            row.id,
            row.target,
            row.call_key,
            row.event,
            row.idempotency_key,
            dict(row.payload),
            row.created_at,
            row.attempts,
        )
        for row in (await conn.execute(query)).all()
    ]


async def pending_count(conn: AsyncConnection, target: str) -> int:
    """Events of ``target`` not delivered (nor given up) yet."""
    query = select(func.count()).where(outbox_table.c.target == target, _pending(outbox_table))
    return int((await conn.execute(query)).scalar_one())


async def claim(conn: AsyncConnection, delivery_id: int, now: datetime, until: datetime) -> bool:
    """Take the row for one try (False: another daemon has it)."""
    o = outbox_table.c
    query = (
        update(outbox_table)
        .where(
            o.id == delivery_id,
            _pending(outbox_table),
            or_(o.claimed_until.is_(None), o.claimed_until < now),
        )
        .values(claimed_until=until)
    )
    return (await conn.execute(query)).rowcount == 1


async def mark_delivered(conn: AsyncConnection, delivery_id: int, now: datetime) -> None:
    o = outbox_table.c
    await conn.execute(
        update(outbox_table)
        .where(o.id == delivery_id)
        .values(delivered_at=now, claimed_until=None, attempts=o.attempts + 1, last_error=None)
    )


async def mark_retry(
    conn: AsyncConnection, delivery_id: int, next_attempt_at: datetime, error: str
) -> None:
    o = outbox_table.c
    await conn.execute(
        update(outbox_table)
        .where(o.id == delivery_id)
        .values(
            next_attempt_at=next_attempt_at,
            claimed_until=None,
            attempts=o.attempts + 1,
            last_error=error[:1000],
        )
    )


async def mark_failed(conn: AsyncConnection, delivery_id: int, now: datetime, error: str) -> None:
    o = outbox_table.c
    await conn.execute(
        update(outbox_table)
        .where(o.id == delivery_id)
        .values(failed_at=now, claimed_until=None, attempts=o.attempts + 1, last_error=error[:1000])
    )
