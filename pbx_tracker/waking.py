"""`woken`: a background loop's pause that ends early when it is woken.

``asyncio.wait_for(event.wait(), seconds)`` is not used for this: on Python 3.11, a
cancellation that meets the event being set returns the result and drops the
cancellation, so a loop stopped at that moment runs on and its daemon never stops.
``asyncio.timeout`` keeps the cancellation.
"""

from __future__ import annotations

import asyncio

__all__ = ["woken"]


async def woken(event: asyncio.Event, seconds: float) -> bool:
    """True when ``event`` is set within ``seconds`` (False when they passed)."""
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return False
    return True
