"""Giving the manager board back each manager's last call end after a restart.

Longest idle and wrap-up then decide as they would have without the restart
(see `ManagerBoard.restore_last_calls`).
"""

from __future__ import annotations

import asyncio

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from pbx_tracker.routing.availability import ManagerBoard
from pbx_tracker.store.last_calls import last_call_ends

__all__ = ["RESTORE_SECONDS", "restore_last_calls"]

log = structlog.get_logger(__name__)

RESTORE_SECONDS = 2.0  # the longest the start waits for the managers' last calls


async def restore_last_calls(
    board: ManagerBoard, engine: AsyncEngine, *, seconds: float = RESTORE_SECONDS
) -> int:
    """Give ``board`` each manager's last call end from the call store; how many had one.

    A database that fails, or does not answer within ``seconds``, costs only
    this (logged): the board learns from AMI as before.
    """
    managers = [manager.extension for manager in board.directory.managers]
    try:
        async with asyncio.timeout(seconds), engine.connect() as conn:
            ends = await last_call_ends(conn, managers)
    except Exception as error:  # whatever the database does, the router must start
        log.warning("routing.last_calls_unknown", error=str(error) or type(error).__name__)
        return 0
    board.restore_last_calls({extension: end.timestamp() for extension, end in ends.items()})
    log.info("routing.last_calls_restored", managers=len(ends), of=len(managers))
    return len(ends)
