"""Write and read call records (pbx_tracker.calls.records.CallRecord).

Inbound calls go to `calls` (+ `ring_attempts`), calls placed by managers to
`outbound_calls`. Saving is idempotent per (node, linkedid): the second save
of a call updates its row. Every function runs inside the caller's
transaction (`async with engine.begin() as conn`); none commits.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Row,
    Table,
    and_,
    delete,
    func,
    insert,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from pbx_tracker.calls.records import (
    CallRecord,
    CallStatus,
    Direction,
    MissedReason,
    RingAttempt,
    SpamReason,
)
from pbx_tracker.store.engine import dialect_insert
from pbx_tracker.store.models import CallRow, OutboundCallRow, RingAttemptRow

Executor = AsyncConnection | AsyncSession

calls_table = cast(Table, CallRow.__table__)
attempts_table = cast(Table, RingAttemptRow.__table__)
outbound_table = cast(Table, OutboundCallRow.__table__)


async def save_call(executor: Executor, record: CallRecord) -> bool | None:
    """Insert or update the record's row: True when the call was new, False when its row
    was updated, None when the stored row was kept (`_replaceable`)."""
    if record.direction is Direction.OUTBOUND:
        saved = await _upsert(executor, outbound_table, _outbound_values(record))
        return None if saved is None else saved[1]
    saved = await _upsert(executor, calls_table, _call_values(record))
    if saved is None:
        return None
    call_id, new = saved
    await _replace_attempts(executor, call_id, record.attempts, new_call=new)
    return new


async def save_calls(executor: Executor, records: Sequence[CallRecord]) -> list[bool | None]:
    """`save_call` for many records in order, with one statement for all ring attempts."""
    news: list[bool | None] = []
    replaced: list[int] = []
    attempt_rows: list[dict[str, Any]] = []
    for record in records:
        if record.direction is Direction.OUTBOUND:
            saved = await _upsert(executor, outbound_table, _outbound_values(record))
            news.append(None if saved is None else saved[1])
            continue
        saved = await _upsert(executor, calls_table, _call_values(record))
        news.append(None if saved is None else saved[1])
        if saved is None:
            continue
        call_id, new = saved
        if not new:
            replaced.append(call_id)
            attempt_rows = [row for row in attempt_rows if row["call_id"] != call_id]
        attempt_rows += [_attempt_values(call_id, attempt) for attempt in record.attempts]
    if replaced:
        await executor.execute(delete(attempts_table).where(attempts_table.c.call_id.in_(replaced)))
    if attempt_rows:
        await executor.execute(insert(attempts_table), attempt_rows)
    return news


async def list_calls(
    executor: Executor, *, limit: int = 1000, offset: int = 0, since: datetime | None = None
) -> list[CallRecord]:
    """Inbound calls with their ring attempts, oldest first (started_at, then id)."""
    c = calls_table.c
    query = select(calls_table).order_by(c.started_at, c.id).limit(limit).offset(offset)
    if since is not None:
        query = query.where(c.started_at >= since)
    rows = (await executor.execute(query)).all()
    attempts = await _attempts_of(executor, [row.id for row in rows])
    return [_record_from_call_row(row, attempts[row.id]) for row in rows]


async def get_call(executor: Executor, call_id: int) -> CallRecord | None:
    """The inbound call with this id (``calls.id``) and its ring attempts, or None."""
    row = (await executor.execute(select(calls_table).where(calls_table.c.id == call_id))).first()
    if row is None:
        return None
    attempts = await _attempts_of(executor, [row.id])
    return _record_from_call_row(row, attempts[row.id])


async def list_outbound_calls(
    executor: Executor, *, limit: int = 1000, offset: int = 0, since: datetime | None = None
) -> list[CallRecord]:
    """Calls placed by managers, oldest first, as records (caller = the customer)."""
    c = outbound_table.c
    query = select(outbound_table).order_by(c.started_at, c.id).limit(limit).offset(offset)
    if since is not None:
        query = query.where(c.started_at >= since)
    return [_record_from_outbound_row(row) for row in (await executor.execute(query)).all()]


async def count_calls(executor: Executor) -> int:
    """How many inbound calls are stored."""
    result = await executor.execute(select(func.count()).select_from(calls_table))
    return int(result.scalar_one())


async def _upsert(
    executor: Executor, table: Table, values: dict[str, Any]
) -> tuple[int, bool] | None:
    """Insert, or update the row with the same (node, linkedid) when `_replaceable`:
    (id, was_new), or None when the stored row was kept."""
    insert_stmt = dialect_insert(executor)(table).values(values)
    new_id = (
        await executor.execute(
            insert_stmt.on_conflict_do_nothing(index_elements=["node", "linkedid"]).returning(
                table.c.id
            )
        )
    ).scalar_one_or_none()
    if new_id is not None:
        return int(new_id), True
    key = and_(table.c.node == values["node"], table.c.linkedid == values["linkedid"])
    changes = {k: v for k, v in values.items() if k != "created_at"}
    where = and_(key, _replaceable(table, values))
    update_stmt = update(table).where(where).values(changes).returning(table.c.id)
    call_id = (await executor.execute(update_stmt)).scalar_one_or_none()
    return None if call_id is None else (int(call_id), False)


def _replaceable(table: Table, values: dict[str, Any]) -> ColumnElement[bool]:
    """Which stored row a record may replace, when a call comes both live and from CEL.

    A call rebuilt from CEL replaces only another recovered row or a live record
    marked incomplete (part of the call went unheard); a live record replaces any
    row unless it is incomplete and the stored one was recovered whole.
    """
    recovered = table.c.recovered_from.is_not(None)
    if values.get("recovered_from") is not None:
        if "complete" not in table.c:  # outbound calls have no incomplete live records
            return recovered
        return or_(recovered, table.c.complete.is_(False))
    if values.get("complete", True):
        return true()
    return table.c.recovered_from.is_(None)


async def _replace_attempts(
    executor: Executor, call_id: int, attempts: Sequence[RingAttempt], *, new_call: bool
) -> None:
    if not new_call:  # a call saved again: its old attempts give way to the new list
        await executor.execute(delete(attempts_table).where(attempts_table.c.call_id == call_id))
    if attempts:
        rows = [_attempt_values(call_id, attempt) for attempt in attempts]
        await executor.execute(insert(attempts_table), rows)


async def _attempts_of(executor: Executor, call_ids: list[int]) -> dict[int, list[RingAttempt]]:
    grouped: dict[int, list[RingAttempt]] = defaultdict(list)
    if not call_ids:
        return grouped
    a = attempts_table.c
    query = select(attempts_table).where(a.call_id.in_(call_ids)).order_by(a.call_id, a.id)
    for row in (await executor.execute(query)).all():
        grouped[row.call_id].append(_attempt_from_row(row))
    return grouped


def _attempt_from_row(row: Row[Any]) -> RingAttempt:
    return RingAttempt(
        row.manager,
        row.channel,
        row.rang_at,
        row.ended_at,
        row.outcome,
        row.queue,
        via=row.via,
        number=row.number,
    )


def _call_values(record: CallRecord) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        **_common_values(record),
        "direction": record.direction.value,
        "caller": record.caller,
        "caller_name": record.caller_name,
        "source": record.source,
        "medium": record.medium,
        "campaign": record.campaign,
        "answered_by": record.answered_by,
        "transferred_to": record.transferred_to,
        "queue": record.queue,
        "first_time_caller": record.first_time_caller,
        "is_target": record.is_target,
        "complete": record.complete,
        "spam": record.spam is not None,
        "spam_reason": record.spam.value if record.spam else None,
        "answer_seconds": answer_seconds(record),
        "answered_via": record.answered_via,
        "answered_number": record.answered_number,
        "transfer_wait_seconds": record.transfer_wait_seconds,
        **_attribution_values(record),
        "created_at": now,
        "updated_at": now,
    }


def answer_seconds(record: CallRecord) -> float | None:
    """How long the answering manager's phone rang before they took the call: the
    answer moment minus the ``rang_at`` of their answered leg (None when unknown)."""
    if record.answered_at is None or record.answered_by is None:
        return None
    for attempt in record.attempts:
        if attempt.outcome == "answer" and attempt.manager == record.answered_by:
            return (record.answered_at - attempt.rang_at).total_seconds()
    return None


def _attribution_values(record: CallRecord) -> dict[str, Any]:
    """The attribution's flat columns; a call with no visit has its own labels as both
    first and last touch."""
    detail = record.attribution or {}
    own = {"source": record.source, "medium": record.medium, "campaign": record.campaign}
    touches = {
        f"{which}_{label}": (detail.get(which) or own).get(label)
        for which in ("first_touch", "last_touch")
        for label in ("source", "medium", "campaign")
    }
    return {
        **touches,
        "session_id": record.session_id,
        "utm_source": record.utm_source,
        "utm_medium": record.utm_medium,
        "utm_campaign": record.utm_campaign,
        "utm_term": record.utm_term,
        "utm_content": record.utm_content,
        "attribution_method": detail.get("method"),
        "attribution_confidence": detail.get("confidence"),
        "attribution": record.attribution,
    }


def _outbound_values(record: CallRecord) -> dict[str, Any]:
    return {
        **_common_values(record),
        "manager": record.answered_by,
        "customer": record.caller,
        "created_at": datetime.now(UTC),
    }


def _common_values(record: CallRecord) -> dict[str, Any]:
    return {
        "node": record.node,
        "linkedid": record.linkedid,
        "did": record.did,
        "status": record.status.value,
        "missed_reason": record.missed_reason.value if record.missed_reason else None,
        "started_at": record.started_at,
        "answered_at": record.answered_at,
        "ended_at": record.ended_at,
        "ring_seconds": record.ring_seconds,
        "talk_seconds": record.talk_seconds,
        "recording_path": record.recording_path,
        "variables": dict(record.variables),
        "recovered_from": record.recovered_from,
    }


def _attempt_values(call_id: int, attempt: RingAttempt) -> dict[str, Any]:
    return {
        "call_id": call_id,
        "manager": attempt.manager,
        "channel": attempt.channel,
        "rang_at": attempt.rang_at,
        "ended_at": attempt.ended_at,
        "outcome": attempt.outcome,
        "queue": attempt.queue,
        "via": attempt.via,
        "number": attempt.number,
    }


def _record_from_call_row(row: Row[Any], attempts: list[RingAttempt]) -> CallRecord:
    return CallRecord(
        **_common_fields(row),
        direction=Direction(row.direction),
        caller=row.caller,
        caller_name=row.caller_name,
        answered_by=row.answered_by,
        transferred_to=row.transferred_to,
        queue=row.queue,
        source=row.source,
        medium=row.medium,
        campaign=row.campaign,
        first_time_caller=row.first_time_caller,
        is_target=row.is_target,
        complete=row.complete,
        session_id=row.session_id,
        utm_source=row.utm_source,
        utm_medium=row.utm_medium,
        utm_campaign=row.utm_campaign,
        utm_term=row.utm_term,
        utm_content=row.utm_content,
        attribution=row.attribution,
        spam=SpamReason(row.spam_reason or SpamReason.MANUAL) if row.spam else None,
        attempts=tuple(attempts),
        answered_via=row.answered_via,
        answered_number=row.answered_number,
        transfer_wait_seconds=row.transfer_wait_seconds,
    )


def _record_from_outbound_row(row: Row[Any]) -> CallRecord:
    return CallRecord(
        **_common_fields(row),
        direction=Direction.OUTBOUND,
        caller=row.customer,
        caller_name=None,
        answered_by=row.manager,
        transferred_to=None,
    )


def _common_fields(row: Row[Any]) -> dict[str, Any]:
    return {
        "linkedid": row.linkedid,
        "node": row.node,
        "did": row.did,
        "status": CallStatus(row.status),
        "missed_reason": MissedReason(row.missed_reason) if row.missed_reason else None,
        "started_at": row.started_at,
        "answered_at": row.answered_at,
        "ended_at": row.ended_at,
        "ring_seconds": row.ring_seconds,
        "talk_seconds": row.talk_seconds,
        "recording_path": row.recording_path,
        "variables": dict(row.variables or {}),
        "recovered_from": row.recovered_from,
    }
