"""Opening the store for a run: engine, schema check, the call writer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from pbx_tracker.store.engine import check_database, make_async_engine, mask_url
from pbx_tracker.store.migrate import is_at_head
from pbx_tracker.store.writer import AfterSave, Attribute, CallWriter, Classify, OnWritten

DRAIN_SECONDS = 20.0


class DatabaseNotReadyError(RuntimeError):
    """The database cannot be used yet; the message says what to do."""


@asynccontextmanager
async def open_call_writer(
    url: str,
    *,
    queue_size: int,
    spill_path: Path,
    on_written: OnWritten | None = None,
    attribute: Attribute | None = None,
    classify: Classify | None = None,
    after_save: AfterSave | None = None,
) -> AsyncIterator[CallWriter]:
    """A started CallWriter on the database at ``url``; drained and closed on exit.

    ``attribute``, ``classify`` and ``after_save`` run in each call's transaction (see
    `CallWriter`); the caller chooses them, the store knows none of them.
    """
    engine = make_async_engine(url)
    try:
        await _check(engine, url)
        writer = CallWriter(
            engine,
            queue_size=queue_size,
            spill_path=spill_path,
            on_written=on_written,
            attribute=attribute,
            classify=classify,
            after_save=after_save,
        )
        await writer.start()
        try:
            yield writer
        finally:
            await writer.drain(DRAIN_SECONDS)
            await writer.stop()
    finally:
        await engine.dispose()


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
