"""Tasks closed elsewhere: a task with a message in a chat that was closed on the callbacks
page, by the CLI or by the customer being reached gets its ``task.closed`` too.

`closed_elsewhere` looks for tasks the ``telegram`` target keeps messages of
(its links) that are no longer open and have no ``task.closed`` event yet, and
writes one for each (the event's key makes it once per task, however often
this runs).  The daemon calls it after each stored call and every minute.
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo

import structlog
from sqlalchemy import String, and_, cast, exists, literal, select
from sqlalchemy.ext.asyncio import AsyncEngine

from pbx_tracker.callbacks import tasks
from pbx_tracker.callbacks.policy import TaskStatus
from pbx_tracker.callbacks.tasks import tasks_table
from pbx_tracker.config_fields import DEFAULT_REGION
from pbx_tracker.crm.links import links_table
from pbx_tracker.crm.outbox import outbox_table
from pbx_tracker.telegram.messages import closed_text
from pbx_tracker.telegram.platform import TARGET, enqueue_closed

__all__ = ["closed_elsewhere"]

log = structlog.get_logger(__name__)

BATCH = 200


async def closed_elsewhere(
    engine: AsyncEngine,
    *,
    region: str = DEFAULT_REGION,
    zone: tzinfo | None = None,
    now: datetime | None = None,
) -> int:
    """Write ``task.closed`` for each task with messages that is closed but has none yet;
    how many were written."""
    link, task = links_table.c, tasks_table.c
    call_key = literal("task:") + cast(task.id, String)
    closed_key = link.call_key + literal(":closed")
    query = (
        select(task.id)
        .select_from(links_table.join(tasks_table, link.call_key == call_key))
        .where(
            link.target == TARGET,
            task.status != TaskStatus.OPEN.value,
            ~exists().where(
                and_(
                    outbox_table.c.target == TARGET,
                    outbox_table.c.idempotency_key == closed_key,
                )
            ),
        )
        .order_by(task.id)
        .limit(BATCH)
    )
    written = 0
    async with engine.begin() as conn:
        for task_id in (await conn.execute(query)).scalars().all():
            found = await tasks.get_task(conn, task_id)
            if found is None or found.is_open:
                continue
            text = closed_text(found, region, zone)
            if await enqueue_closed(conn, task_id, text, now or datetime.now(UTC)):
                written += 1
    if written:
        log.info("telegram.closed_elsewhere", tasks=written)
    return written
