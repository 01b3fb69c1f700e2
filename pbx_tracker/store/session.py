"""Opening the store for a run: engine, schema check, the call writer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from pbx_tracker.attribution.attribute import Attributor
from pbx_tracker.calls.records import CallRecord
from pbx_tracker.crm.outbox import enqueue_calls
from pbx_tracker.spam.classify import SpamClassifier
from pbx_tracker.store.engine import check_database, make_async_engine, mask_url
from pbx_tracker.store.migrate import is_at_head
from pbx_tracker.store.writer import CallWriter

if TYPE_CHECKING:
    from pbx_tracker.config import Settings

DRAIN_SECONDS = 20.0


class DatabaseNotReadyError(RuntimeError):
    """The database cannot be used yet; the message says what to do."""


@asynccontextmanager
async def open_writer(
    settings: Settings, on_written: Callable[[CallRecord, bool], None] | None = None
) -> AsyncIterator[CallWriter]:
    """A started CallWriter on the configured database; drained and closed on exit."""
    url = settings.database.url
    engine = make_async_engine(url)
    try:
        await _check(engine, url)
        writer = CallWriter(
            engine,
            queue_size=settings.database.queue_size,
            spill_path=settings.database.spill_path,
            on_written=on_written,
            attribute=Attributor(
                settings.attribution, settings.number_pools, settings.directory
            ).attribute
            if settings.number_pools
            else None,
            # always: a call re-saved keeps what a manager decided about it by hand
            classify=SpamClassifier(settings.spam).classify,
            after_save=_crm_outbox if settings.crm.webhook is not None else None,
        )
        await writer.start()
        try:
            yield writer
        finally:
            await writer.drain(DRAIN_SECONDS)
            await writer.stop()
    finally:
        await engine.dispose()


async def _crm_outbox(conn: AsyncConnection, saved: Sequence[tuple[CallRecord, bool]]) -> None:
    """Each stored call's event for the CRM, in the call's own transaction."""
    await enqueue_calls(conn, saved, datetime.now(UTC))


async def _check(engine: AsyncEngine, url: str) -> None:
    try:
        await check_database(engine)
        at_head = await asyncio.to_thread(is_at_head, url)
    except Exception as error:
        raise DatabaseNotReadyError(f"database {mask_url(url)} unreachable: {error}") from None
    if not at_head:
        raise DatabaseNotReadyError(
            f"database {mask_url(url)} schema is not up to date: run `pbx-tracker db upgrade`"
        )
