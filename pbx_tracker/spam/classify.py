"""Which inbound calls are spam, decided when the call writer stores them.

`SpamClassifier.classify` runs in the writer's transaction, for one record or
a batch in order, and fills `CallRecord.spam` on inbound calls (outbound ones
are never spam), first rule that holds:

- ``blocked``: the caller is on ``spam.block`` (a number, or a ``+digits*`` prefix);
- ``hidden``: no caller number, and ``spam.block_hidden``;
- ``repeat``: ``spam.repeat_limit`` calls or more of the same number started
  within ``repeat_window_minutes`` before this one (calls stored, and the
  batch's earlier records): this call is past the limit.

A call a manager marked or unmarked by hand (``spam_changed_at`` set) keeps
that decision when it is saved again (a replay, a re-sent record).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncConnection

from pbx_tracker.calls.records import CallRecord, Direction, SpamReason
from pbx_tracker.spam.settings import SpamSettings
from pbx_tracker.store.models import CallRow

__all__ = ["SpamClassifier"]

calls_table = cast(Table, CallRow.__table__)
Key = tuple[str, str]  # (node, linkedid)
History = dict[str, list[tuple[datetime, Key]]]  # caller -> (started_at, key) of their calls


class SpamClassifier:
    """The ``spam:`` rules, applied to records about to be stored."""

    def __init__(self, settings: SpamSettings) -> None:
        self.settings = settings
        self.numbers = frozenset(entry for entry in settings.block if not entry.endswith("*"))
        self.prefixes = tuple(entry[:-1] for entry in settings.block if entry.endswith("*"))
        self.window = timedelta(minutes=settings.repeat_window_minutes)

    def blocked(self, caller: str | None) -> bool:
        """Is this caller (E.164) on the block list, as a number or by a prefix?"""
        return caller is not None and (caller in self.numbers or caller.startswith(self.prefixes))

    def rule_reason(self, record: CallRecord) -> SpamReason | None:
        """``blocked`` or ``hidden`` when a rule of the number itself holds, else None."""
        if self.blocked(record.caller):
            return SpamReason.BLOCKED
        if record.caller is None and self.settings.block_hidden:
            return SpamReason.HIDDEN
        return None

    async def classify(
        self, conn: AsyncConnection, records: Sequence[CallRecord]
    ) -> list[CallRecord]:
        """The records with `spam` filled (inbound ones; others as they are)."""
        inbound = [r for r in records if r.direction is Direction.INBOUND]
        if not inbound:
            return list(records)
        manual = await _manual_marks(conn, [(r.node, r.linkedid) for r in inbound])
        history = await self._history(conn, inbound)
        classified = []
        for record in records:
            if record.direction is Direction.INBOUND:
                key = (record.node, record.linkedid)
                spam = manual[key] if key in manual else self._reason(record, history)
                record = record.replace(spam=spam)
            classified.append(record)
        return classified

    def _reason(self, record: CallRecord, history: History) -> SpamReason | None:
        reason = self.rule_reason(record)
        limit = self.settings.repeat_limit
        if limit is None or record.caller is None:
            return reason
        key, start = (record.node, record.linkedid), record.started_at
        calls = history[record.caller]
        earlier = sum(1 for at, k in calls if start - self.window <= at < start and k != key)
        calls[:] = [(at, k) for at, k in calls if k != key] + [(start, key)]
        if reason is None and earlier >= limit:
            return SpamReason.REPEAT
        return reason

    async def _history(self, conn: AsyncConnection, records: list[CallRecord]) -> History:
        """The stored calls of the records' callers that a repeat window can reach."""
        history: History = defaultdict(list)
        callers = sorted({r.caller for r in records if r.caller is not None})
        if self.settings.repeat_limit is None or not callers:
            return history
        c = calls_table.c
        query = select(c.caller, c.started_at, c.node, c.linkedid).where(
            c.caller.in_(callers),
            c.started_at >= min(r.started_at for r in records) - self.window,
            c.started_at < max(r.started_at for r in records),
        )
        for row in (await conn.execute(query)).all():
            history[row.caller].append((row.started_at, (row.node, row.linkedid)))
        return history


async def _manual_marks(conn: AsyncConnection, keys: list[Key]) -> dict[Key, SpamReason | None]:
    """What managers decided by hand about the calls among ``keys`` already stored."""
    c = calls_table.c
    query = select(c.node, c.linkedid, c.spam, c.spam_reason).where(
        c.node.in_(sorted({node for node, _ in keys})),
        c.linkedid.in_(sorted({linkedid for _, linkedid in keys})),
        c.spam_changed_at.is_not(None),
    )
    wanted = set(keys)
    return {
        (row.node, row.linkedid): SpamReason(row.spam_reason or SpamReason.MANUAL)
        if row.spam
        else None
        for row in (await conn.execute(query)).all()
        if (row.node, row.linkedid) in wanted
    }
