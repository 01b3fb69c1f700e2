"""A background loop's pause (`pbx_tracker.waking.woken`): woken early, timed out, and
stopped even when the stop meets a wake-up."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from pbx_tracker.waking import woken

Pause = Callable[[asyncio.Event, float], Awaitable[object]]


async def stopped_as_woken(pause: Pause) -> bool:
    """Whether a loop pausing with ``pause`` ends when it is cancelled at the moment its
    event is set (a daemon stopping while calls still come in)."""
    event = asyncio.Event()
    waiting = asyncio.Event()

    async def loop() -> None:
        while True:
            waiting.set()
            await pause(event, 60.0)
            event.clear()
            await asyncio.sleep(0.001)

    task = asyncio.create_task(loop())
    await waiting.wait()
    event.set()
    task.cancel()
    try:
        async with asyncio.timeout(1.0):
            await asyncio.shield(task)
    except asyncio.CancelledError:
        return True
    except TimeoutError:
        task.cancel()  # the loop ran on: stop it for good
        with pytest.raises(asyncio.CancelledError):
            await task
    return False


async def test_a_loop_stopped_as_it_is_woken_ends() -> None:
    """The daemon stops its loops while an event wakes one: the loop ends (with Python 3.11's
    asyncio.wait_for in its place it runs on, and the daemon hangs at stop)."""
    assert await stopped_as_woken(woken)


async def test_woken_says_whether_the_event_came() -> None:
    """An event set in time is True; none within the time is False."""
    event = asyncio.Event()
    assert not await woken(event, 0.01)
    event.set()
    assert await woken(event, 0.01)
