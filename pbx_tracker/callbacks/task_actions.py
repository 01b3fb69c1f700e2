"""What managers do to a callback task: close it, snooze it, give it to someone else.

Every function runs in the caller's transaction (`async with engine.begin()
as conn`) and never commits; the caller passes the time (`now`).  A task
that is done, or is closed by someone else meanwhile, is a `TaskError` whose
message is for the user.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from pbx_tracker.callbacks.policy import EventKind, Resolution, TaskStatus
from pbx_tracker.callbacks.tasks import (
    CallbackTask,
    TaskError,
    add_event,
    existing_task,
    get_task,
    update_open,
)
from pbx_tracker.calls.records import format_time

__all__ = ["assign_task", "close_task", "snooze_task"]


async def close_task(
    conn: AsyncConnection, task_id: int, *, by: str, now: datetime
) -> CallbackTask:
    """Close the open task by hand (resolution closed_by_manager)."""
    await _open_task_or_error(conn, task_id, "close")
    changes = {
        "status": TaskStatus.DONE.value,
        "resolution": Resolution.CLOSED_BY_MANAGER.value,
        "resolved_by": by,
        "resolved_at": now,
        "updated_at": now,
    }
    await _command(conn, task_id, "close", changes)
    await add_event(conn, task_id, now, EventKind.CLOSED, {"by": by})
    return await existing_task(conn, task_id)


async def snooze_task(
    conn: AsyncConnection, task_id: int, *, until: datetime, by: str, now: datetime
) -> CallbackTask:
    """No reminders for the open task before `until` (later than `now`)."""
    if until <= now:
        raise TaskError(f"cannot snooze task {task_id}: {format_time(until)} is not later than now")
    await _open_task_or_error(conn, task_id, "snooze")
    await _command(conn, task_id, "snooze", {"snoozed_until": until, "updated_at": now})
    detail = {"by": by, "until": format_time(until)}
    await add_event(conn, task_id, now, EventKind.SNOOZED, detail)
    return await existing_task(conn, task_id)


async def assign_task(
    conn: AsyncConnection, task_id: int, *, extension: str, by: str, now: datetime
) -> CallbackTask:
    """Give the open task to the manager with `extension`."""
    task = await _open_task_or_error(conn, task_id, "assign")
    await _command(conn, task_id, "assign", {"assignee": extension, "updated_at": now})
    detail = {"by": by, "from": task.assignee, "to": extension}
    await add_event(conn, task_id, now, EventKind.ASSIGNED, detail)
    return await existing_task(conn, task_id)


async def _open_task_or_error(conn: AsyncConnection, task_id: int, action: str) -> CallbackTask:
    task = await get_task(conn, task_id)
    if task is None:
        raise TaskError(f"cannot {action} task {task_id}: no such task")
    if not task.is_open:
        raise TaskError(f"cannot {action} task {task_id}: it is done ({task.resolution})")
    return task


async def _command(
    conn: AsyncConnection, task_id: int, action: str, changes: dict[str, Any]
) -> None:
    if not await update_open(conn, task_id, changes):  # closed by someone else meanwhile
        raise TaskError(f"cannot {action} task {task_id}: it was just closed")
