"""`pbx-tracker spam …`: list a period's spam calls, mark a call as spam, undo the marking.

Each command works on the database directly.  Undoing the marking of a missed
call opens (or joins) the customer's callback task; the running daemon sends
its reminders from its next sweep (within half a minute), and gives a task
whose call rang nobody to a free manager of the number's group.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict
from datetime import datetime, tzinfo
from typing import Any, TypeVar

from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncConnection

from pbx_tracker.callbacks.settings import CallbackSettings
from pbx_tracker.calls.records import format_time
from pbx_tracker.command_error import CommandError
from pbx_tracker.phones import display_number
from pbx_tracker.reports.period import PeriodError, period_of
from pbx_tracker.spam import marking
from pbx_tracker.store.engine import in_transaction
from pbx_tracker.terminal import as_text

__all__ = ["list_spam_calls", "mark_call", "undo_call"]

_T = TypeVar("_T")
COLUMNS = ("id", "time", "caller", "number", "source", "status", "reason", "changed by")
_REASONS = {
    "blocked": "blocked number",
    "hidden": "hidden number",
    "repeat": "repeat calls",
    "manual": "marked by hand",
}


async def _run(database_url: str, work: Callable[[AsyncConnection], Awaitable[_T]]) -> _T:
    try:
        return await in_transaction(database_url, work)
    except marking.SpamError as error:
        raise CommandError(str(error)) from None


async def list_spam_calls(
    database_url: str, *, zone: tzinfo | None, region: str, start: str, end: str, fmt: str
) -> str:
    """The spam calls of the period (days cut in ``zone``, None: the machine's), newest
    first; numbers shown as dialled in ``region``."""
    try:
        period = period_of(start, end, zone)
    except PeriodError as error:
        raise CommandError(str(error)) from None

    async def work(conn: AsyncConnection) -> list[marking.SpamCall]:
        return await marking.list_spam(conn, period.start, period.end, limit=10_000)

    found = await _run(database_url, work)
    if fmt == "json":
        return json.dumps([_as_json(call) for call in found], ensure_ascii=False, indent=2)
    return _table(found, zone, region)


def _as_json(call: marking.SpamCall) -> dict[str, Any]:
    row = asdict(call)
    for key, value in row.items():
        if isinstance(value, datetime):
            row[key] = format_time(value)
    return row


def _table(found: Sequence[marking.SpamCall], zone: tzinfo | None, region: str) -> str:
    if not found:
        return "no spam calls in this period"
    table = Table(title="Spam calls", title_justify="left")
    for column in COLUMNS:
        table.add_column(column, justify="right" if column == "id" else "left")
    for call in found:
        started = call.started_at.astimezone(zone)
        status = call.status if call.missed_reason is None else f"missed ({call.missed_reason})"
        table.add_row(
            str(call.id),
            f"{started:%Y-%m-%d %H:%M}",
            display_number(call.caller, region) if call.caller else "hidden number",
            display_number(call.did, region),
            call.source or "",
            status,
            _REASONS.get(call.reason, call.reason),
            call.changed_by or "",
        )
    return as_text(table, width=160)


async def mark_call(
    database_url: str,
    call_id: int,
    *,
    by: str,
    now: datetime,
    crm_targets: Sequence[str] = (),
) -> str:
    """Mark the call as spam; say which callback tasks that closed."""

    async def work(conn: AsyncConnection) -> marking.SpamChange:
        return await marking.mark_spam(conn, call_id, by=by, now=now, crm_targets=crm_targets)

    change = await _run(database_url, work)
    text = f"call {call_id} marked as spam by {by}"
    if change.closed_tasks:
        closed = ", ".join(str(task_id) for task_id in change.closed_tasks)
        text += f"; callback task {closed} closed (only spam calls left)"
    return text


async def undo_call(
    database_url: str,
    callbacks: CallbackSettings,
    call_id: int,
    *,
    by: str,
    now: datetime,
    crm_targets: Sequence[str] = (),
) -> str:
    """Undo the marking; say which callback task the call opened or joined."""

    async def work(conn: AsyncConnection) -> marking.SpamChange:
        return await marking.undo_spam(
            conn, call_id, by=by, now=now, callbacks=callbacks, crm_targets=crm_targets
        )

    change = await _run(database_url, work)
    was = _REASONS.get(change.was.value, change.was.value) if change.was else "spam"
    text = f"call {call_id} is no spam any more (was: {was}), changed by {by}"
    if change.task is not None:
        text += f"; it {change.task.kind} callback task {change.task.task_id}"
    return text
