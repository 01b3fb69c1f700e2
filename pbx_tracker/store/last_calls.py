"""When each manager's last conversation ended, read back from the call store.

The routing board learns a manager's last call end from live AMI only; after a
restart `last_call_ends` gives it back (longest idle, wrap-up).  A manager
talked on an answered inbound call they answered or were transferred to
(``calls.answered_by`` / ``calls.transferred_to``) and on an answered call they
placed (``outbound_calls.manager``); the latest ``ended_at`` of those counts.
Ring attempts are not read: an answered attempt's ``ended_at`` is the moment it
was answered, not the end of the conversation.

Each (manager, column) is one backward step in its own index (migration 0013:
``(answered_by, ended_at)``, ``(transferred_to, ended_at)`` and
``outbound_calls (manager, ended_at)``, answered rows only), so the cost is the
number of managers, not of stored calls.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Select, Table, func, literal, select, union_all
from sqlalchemy.sql import ColumnElement

from pbx_tracker.calls.records import CallStatus
from pbx_tracker.store.calls import Executor, calls_table, outbound_table

__all__ = ["last_call_ends"]

CHUNK = 100  # managers per statement (SQLite allows 500 SELECTs in one UNION)


async def last_call_ends(executor: Executor, managers: Iterable[str]) -> dict[str, datetime]:
    """The latest end of an answered conversation of each of ``managers`` that had one."""
    wanted = sorted(set(managers))
    ends: dict[str, datetime] = {}
    for first in range(0, len(wanted), CHUNK):
        chunk = wanted[first : first + CHUNK]
        query = union_all(*(_latest_of(manager) for manager in chunk))
        for manager, *found in (await executor.execute(query)).all():
            latest = max((end for end in found if end is not None), default=None)
            if latest is not None:
                ends[str(manager)] = latest
    return ends


def _latest_of(manager: str) -> Select[Any]:
    """One row: the manager and their latest end as answerer, transfer target and caller."""
    return select(
        literal(manager).label("manager"),
        _latest_end(calls_table, calls_table.c.answered_by, manager).label("answered"),
        _latest_end(calls_table, calls_table.c.transferred_to, manager).label("transferred"),
        _latest_end(outbound_table, outbound_table.c.manager, manager).label("placed"),
    )


def _latest_end(table: Table, column: ColumnElement[Any], manager: str) -> Any:
    c = table.c
    query = select(func.max(c.ended_at)).where(
        column == manager, c.status == CallStatus.ANSWERED.value
    )
    return query.scalar_subquery()
