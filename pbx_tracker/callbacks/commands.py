"""`pbx-tracker callbacks …`: list, close, snooze, reassign and call back tasks from a shell.

Each command works on the database directly; the running daemon sees the
change at its next reminder (a closed task is never reminded of again, a
snoozed one waits) or within half a minute (the scheduler's sweep).
`call` places the click-to-call callback itself over AMI and waits for the
manager's side of it; the daemon then sees the call and closes the task when
the customer answers.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any, TypeVar

from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncConnection

from pbx_tracker.ami.connection import AmiConnectionSettings, AmiListener
from pbx_tracker.callbacks import tasks
from pbx_tracker.callbacks.ringme import RingMe, RingMeCall, RingMeRefused, RingMeResult
from pbx_tracker.callbacks.settings import RingMeSettings
from pbx_tracker.callbacks.task_actions import assign_task, close_task, snooze_task
from pbx_tracker.calls.events import AmiEvent
from pbx_tracker.command_error import CommandError
from pbx_tracker.phones import display_number
from pbx_tracker.routing.plan import RoutingPlan
from pbx_tracker.staff import Directory
from pbx_tracker.store.engine import in_transaction
from pbx_tracker.terminal import as_text

__all__ = [
    "assign_callback",
    "call_back",
    "close_callback",
    "list_callbacks",
    "parse_duration",
    "snooze_callback",
]

_T = TypeVar("_T")
_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m(?:in)?)?(?:(\d+)s)?")
_MAX_SNOOZE = timedelta(days=30)
_RESOLVED = {
    "answered_inbound": "called again, answered",
    "called_back": "called back",
    "closed_by_manager": "closed",
}


def parse_duration(text: str) -> timedelta:
    """``30m``, ``2h``, ``1h30m``, ``1d``, ``90s`` (or plain minutes: ``45``)."""
    compact = text.strip().lower().replace(" ", "")
    if compact.isdigit():
        compact += "m"
    match = _DURATION.fullmatch(compact)
    if not compact or match is None or not any(match.groups()):
        raise CommandError(f"{text!r} is no duration: write e.g. 30m, 2h, 1h30m or 1d")
    days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
    duration = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    if not timedelta(0) < duration <= _MAX_SNOOZE:
        raise CommandError(f"{text!r}: a snooze must be longer than 0 and at most 30 days")
    return duration


async def _run(database_url: str, work: Callable[[AsyncConnection], Awaitable[_T]]) -> _T:
    try:
        return await in_transaction(database_url, work)
    except tasks.TaskError as error:
        raise CommandError(str(error)) from None


async def list_callbacks(
    database_url: str,
    directory: Directory,
    *,
    mine: str | None,
    everything: bool,
    fmt: str,
    now: datetime,
) -> str:
    """Open tasks (``everything``: done ones too), newest first, as a table or JSON."""

    async def work(conn: AsyncConnection) -> list[tasks.CallbackTask]:
        status = None if everything else "open"
        return await tasks.list_tasks(conn, status=status, assignee=mine, limit=500)

    found = await _run(database_url, work)
    if fmt == "json":
        return json.dumps([_as_json(task) for task in found], ensure_ascii=False, indent=2)
    return _table(found, directory, now)


def _as_json(task: tasks.CallbackTask) -> dict[str, Any]:
    row = asdict(task)
    for key, value in row.items():
        if isinstance(value, datetime):
            row[key] = value.astimezone(UTC).isoformat().replace("+00:00", "Z")
        elif isinstance(value, Enum):
            row[key] = value.value
    return row


def _table(found: Sequence[tasks.CallbackTask], directory: Directory, now: datetime) -> str:
    if not found:
        return "no callback tasks"
    table = Table(title="Callback tasks", title_justify="left")
    for column in ("id", "customer", "tries", "waiting", "source", "number", "assignee", "state"):
        table.add_column(column, justify="right" if column in ("id", "tries") else "left")
    for task in found:
        table.add_row(
            str(task.id),
            _customer(task, directory.region),
            str(task.tries),
            _age(now - task.first_missed_at),
            task.source or "",
            display_number(task.did, directory.region),
            _assignee(task, directory),
            _state(task, now),
        )
    return as_text(table, width=140)


def _customer(task: tasks.CallbackTask, region: str) -> str:
    if task.customer is None:
        return "hidden number"
    shown = display_number(task.customer, region)
    return shown if task.dialable else f"{shown} (cannot be dialled)"


def _assignee(task: tasks.CallbackTask, directory: Directory) -> str:
    if task.assignee is None:
        return task.group_name or ""
    manager = directory.manager_for_extension(task.assignee)
    return f"{task.assignee} {manager.name}" if manager else task.assignee


def _state(task: tasks.CallbackTask, now: datetime) -> str:
    if not task.is_open:
        how = _RESOLVED.get(task.resolution.value if task.resolution else "", "done")
        return how + (f" by {task.resolved_by}" if task.resolved_by else "")
    if task.snoozed_until is not None and task.snoozed_until > now:
        return f"snoozed for {_age(task.snoozed_until - now)}"
    reminded = f", reminded {task.reminders_sent}x" if task.reminders_sent else ""
    return "open" + reminded


def _age(delta: timedelta) -> str:
    minutes = max(0, int(delta.total_seconds() // 60))
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    return f"{hours // 24} days"


async def close_callback(database_url: str, task_id: int, *, by: str, now: datetime) -> str:
    async def work(conn: AsyncConnection) -> tasks.CallbackTask:
        return await close_task(conn, task_id, by=by, now=now)

    await _run(database_url, work)
    return f"callback task {task_id} closed by {by}"


async def snooze_callback(
    database_url: str, task_id: int, duration: str, *, by: str, now: datetime
) -> str:
    """Snooze for ``duration`` as the user wrote it (`parse_duration`)."""
    length = parse_duration(duration)

    async def work(conn: AsyncConnection) -> tasks.CallbackTask:
        return await snooze_task(conn, task_id, until=now + length, by=by, now=now)

    await _run(database_url, work)
    return f"callback task {task_id} snoozed for {_age(length)}"


async def assign_callback(
    database_url: str,
    directory: Directory,
    task_id: int,
    extension: str,
    *,
    by: str,
    now: datetime,
) -> str:
    manager = directory.manager_for_extension(extension)
    if manager is None:
        raise CommandError(f"{extension} is no manager in the config")

    async def work(conn: AsyncConnection) -> tasks.CallbackTask:
        return await assign_task(conn, task_id, extension=extension, by=by, now=now)

    await _run(database_url, work)
    return f"callback task {task_id} assigned to {extension} {manager.name}"


async def call_back(
    database_url: str,
    task_id: int,
    *,
    manager: str | None,
    ami: AmiConnectionSettings,
    ring_me: RingMeSettings,
    plan: RoutingPlan,
) -> str:
    """Ring the manager's phone, then the customer (ring me); how the manager's side went."""
    task = await _callable_task(database_url, task_id)
    extension = manager or task.assignee
    if extension is None or plan.manager(extension) is None:
        raise CommandError(f"task {task_id} has no assignee: give --manager EXT")
    ready = asyncio.Event()
    listener = AmiListener(ami, on_status=lambda text, up: ready.set() if up else None)
    running = asyncio.create_task(listener.run())
    try:
        await _logged_in(ami, ready, running)
        result = await _ring(ring_me, plan, listener, task, extension)
    finally:
        await listener.close()
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    await _run(
        database_url,
        lambda conn: tasks.record_ringme_attempt(
            conn, task_id, at=datetime.now(UTC), manager=extension
        ),
    )
    return f"callback task {task_id}: {extension} {result.reason} ({result.outcome})"


async def _callable_task(database_url: str, task_id: int) -> tasks.CallbackTask:
    """The open task with a number to dial; CommandError saying why not."""
    task = await _run(database_url, lambda conn: tasks.get_task(conn, task_id))
    if task is None:
        raise CommandError(f"no callback task {task_id}")
    if not task.is_open:
        how = task.resolution.value if task.resolution else "done"
        raise CommandError(f"cannot call back task {task_id}: it is done ({how})")
    if not task.dialable or task.customer is None:
        raise CommandError(f"cannot call back task {task_id}: the number cannot be dialled")
    return task


async def _logged_in(
    ami: AmiConnectionSettings, ready: asyncio.Event, running: asyncio.Task[None]
) -> None:
    """Wait for the AMI login; CommandError when Asterisk refuses or cannot be reached."""
    waiting = asyncio.create_task(ready.wait())
    limit = ami.connect_timeout * 3
    done, _ = await asyncio.wait({waiting, running}, timeout=limit, return_when="FIRST_COMPLETED")
    waiting.cancel()
    if waiting in done and ready.is_set():
        return
    where = f"{ami.host}:{ami.port}"
    if running.done() and running.exception() is not None:
        raise CommandError(f"AMI {where}: {running.exception()}")
    raise CommandError(f"AMI {where}: no login within {limit:g} s")


async def _ring(
    ring: RingMeSettings,
    plan: RoutingPlan,
    listener: AmiListener,
    task: tasks.CallbackTask,
    extension: str,
) -> RingMeResult:
    async def send(action: Any, timeout: float) -> object:  # noqa: ASYNC109
        return await listener.send_action(action, timeout=timeout)

    ringme = RingMe(send, ring, region=plan.directory.region)
    dial = plan.dial_string(extension).split("&")[0]
    call = RingMeCall(
        task.id, extension, dial, task.customer or "", task.did, task.ringme_attempts + 1
    )
    limit = ring.manager_ring_seconds + 15
    try:
        async with asyncio.timeout(limit):
            try:
                await ringme.start(call)
            except RingMeRefused as refused:
                raise CommandError(refused.reason) from None
            while True:
                item = await listener.events.get()
                if isinstance(item, AmiEvent) and (result := ringme.feed(item)) is not None:
                    return result
    except TimeoutError:
        raise CommandError(
            f"Asterisk said nothing about the call within {limit} s;"
            " the manager's phone may still be ringing"
        ) from None
