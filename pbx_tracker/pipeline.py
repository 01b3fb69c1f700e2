"""One path for a finished call: label → remember → store → listeners.

The daemon (calls heard live and the calls CEL recovery rebuilt), `replay` and
the demo hand each finished call to `CallPipeline.finished`:

- label: the config's tracked numbers (DID, source, target call; a call on an
  untracked number gets no record), then any more labels of the run (a dry run's
  first-time callers);
- remember: what must know the call before it is stored (the router's caller
  history, so the caller's next call rings the same manager);
- store: the call writer, which in the call's own transaction also credits it
  to a website visit (number pools), classifies spam and fills the CRM outbox;
- listeners: what follows once the call is stored (callbacks, metrics, the CRM
  delivery, the pools' watch), registered explicitly in `Listeners`, in order,
  each failing on its own.

The store knows none of these rooms: `open_writer` chooses its steps from the
config.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from pbx_tracker.attribution.attribute import Attributor
from pbx_tracker.calls.records import CallRecord, CallStatus, Direction
from pbx_tracker.crm.outbox import enqueue_calls
from pbx_tracker.spam.classify import SpamClassifier
from pbx_tracker.store.session import open_call_writer
from pbx_tracker.store.writer import Attribute, CallWriter

if TYPE_CHECKING:
    from pbx_tracker.config import Settings

__all__ = ["CallPipeline", "Listener", "Listeners", "listeners_of", "open_writer"]

log = structlog.get_logger(__name__)

Label = Callable[[CallRecord], CallRecord | None]  # None: no record for this call
Remember = Callable[[CallRecord], object]
Store = Callable[[CallRecord], None]
Listener = Callable[[CallRecord, bool], object]  # (the call as stored, was it new)


class Listeners:
    """What follows each stored call, in the order registered.

    A listener that raises is logged and the next ones still run.
    """

    def __init__(self) -> None:
        self._listeners: list[tuple[str, Listener]] = []

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self._listeners]

    def add(self, name: str, listener: Listener) -> None:
        self._listeners.append((name, listener))

    def __call__(self, record: CallRecord, new: bool) -> None:
        for name, listener in self._listeners:
            try:
                listener(record, new)
            except Exception:
                log.exception("pipeline.listener_failed", listener=name, linkedid=record.linkedid)


def listeners_of(writer: CallWriter) -> Listeners:
    """The writer's listeners; a hook it was opened with otherwise is the first of them."""
    if isinstance(writer.on_written, Listeners):
        return writer.on_written
    listeners = Listeners()
    if writer.on_written is not None:
        listeners.add("opened_with", writer.on_written)
    writer.on_written = listeners
    return listeners


class CallPipeline:
    """Label → remember → store, for each finished call; the writer's listeners follow.

    ``log_calls``: log each call (``calls.finished``, ``calls.untracked``), as the daemon
    does; `replay` prints a summary instead.
    """

    def __init__(
        self,
        labels: Sequence[Label],
        store: Store,
        *,
        remember: Sequence[Remember] = (),
        log_calls: bool = False,
    ) -> None:
        self.labels = list(labels)
        self.remember = list(remember)
        self.store = store
        self.log_calls = log_calls

    def finished(self, record: CallRecord) -> CallRecord | None:
        """Take a finished call down the path; the record handed to the store, if any."""
        labelled = self.label(record)
        if labelled is None:
            if self.log_calls:
                log.info("calls.untracked", did=record.did, linkedid=record.linkedid)
            return None
        for remember in self.remember:
            remember(labelled)
        if self.log_calls:
            _log_finished(labelled)
        self.store(labelled)
        return labelled

    def label(self, record: CallRecord) -> CallRecord | None:
        labelled: CallRecord | None = record
        for label in self.labels:
            if labelled is None:
                break
            labelled = label(labelled)
        return labelled


def _log_finished(record: CallRecord) -> None:
    log.info(
        "calls.finished",
        linkedid=record.linkedid,
        direction=str(record.direction),
        did=record.did,
        source=record.source,
        status=str(record.status),
        missed_reason=record.missed_reason and str(record.missed_reason),
        answered_by=record.answered_by,
        ring=record.ring_seconds,
        talk=record.talk_seconds,
    )
    if _answered_by_undeclared(record):
        # the admin declares this number or device for a manager (managers[] in the config)
        log.warning(
            "calls.answered_by_undeclared",
            linkedid=record.linkedid,
            answered_number=record.answered_number,
            answered_via=record.answered_via,
        )


def _answered_by_undeclared(record: CallRecord) -> bool:
    """An inbound call someone answered whom no manager declared as a device or number."""
    inbound = record.direction is Direction.INBOUND
    return inbound and record.status is CallStatus.ANSWERED and record.answered_by is None


@asynccontextmanager
async def open_writer(
    settings: Settings, on_written: Listener | None = None
) -> AsyncIterator[CallWriter]:
    """A started call writer on the configured database, with the config's steps in each
    call's transaction; ``on_written``: the first of its `Listeners` (a test's, the
    demo's).  Drained and closed on exit."""
    listeners = Listeners()
    if on_written is not None:
        listeners.add("opened_with", on_written)
    database = settings.database
    async with open_call_writer(
        database.url,
        queue_size=database.queue_size,
        spill_path=database.spill_path,
        on_written=listeners,
        attribute=_attribute(settings),
        # always: a call re-saved keeps what a manager decided about it by hand
        classify=SpamClassifier(settings.spam).classify,
        after_save=_crm_outbox(settings.crm.targets) if settings.crm.targets else None,
    ) as writer:
        yield writer


def _attribute(settings: Settings) -> Attribute | None:
    """Calls on pool numbers credited to website visits (with number pools only)."""
    if not settings.number_pools:
        return None
    pools = Attributor(settings.attribution, settings.number_pools, settings.directory)
    return pools.attribute


def _crm_outbox(
    targets: Sequence[str],
) -> Callable[[AsyncConnection, Sequence[tuple[CallRecord, bool]]], Awaitable[None]]:
    """Each stored call's events for the CRMs, in the call's own transaction."""

    async def enqueue(conn: AsyncConnection, saved: Sequence[tuple[CallRecord, bool]]) -> None:
        await enqueue_calls(conn, saved, datetime.now(UTC), targets=targets)

    return enqueue
