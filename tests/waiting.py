"""Waiting until something holds, always bounded and never a fixed sleep.

`until` and `first_found` look again each time the code under test sets an event
(a record written, an AMI item taken in, a request received); `polled` is for the
rare thing nothing tells about (another process's database), looked at on a short
interval.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

WAIT = 15.0

T = TypeVar("T")


async def until(holds: Callable[[], bool], changed: asyncio.Event, seconds: float = WAIT) -> None:
    """Until ``holds()``, looked at again each time ``changed`` is set; TimeoutError after
    ``seconds``."""
    async with asyncio.timeout(seconds):
        while not holds():
            changed.clear()
            await changed.wait()


async def first_found(
    look: Callable[[], Awaitable[T | None]], changed: asyncio.Event, seconds: float = WAIT
) -> T:
    """The first result of ``look()`` that is not None, looked for again each time ``changed``
    is set (cleared before each look: ``look`` awaits, and a change meanwhile is not lost);
    TimeoutError after ``seconds``."""
    async with asyncio.timeout(seconds):
        while True:
            changed.clear()
            found = await look()
            if found is not None:
                return found
            await changed.wait()


async def polled(
    holds: Callable[[], bool], what: str, *, seconds: float = 10.0, every: float = 0.01
) -> None:
    """Until ``holds()``, looked at every ``every`` seconds; the test fails naming ``what``
    after ``seconds``."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not holds():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"timed out after {seconds} s waiting for {what}")
        await asyncio.sleep(every)
