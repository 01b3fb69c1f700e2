""" "Call now" on a callback task, wherever a manager presses it (the web page, a Telegram
reminder): the ring-me Originate from the manager's phone to the customer, and the
attempt written on the task."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from pbx_tracker.callbacks import tasks
from pbx_tracker.callbacks.ringme import RingMe, RingMeCall

__all__ = ["call_customer_now"]


async def call_customer_now(
    ringme: RingMe,
    engine: AsyncEngine,
    task: tasks.CallbackTask,
    *,
    extension: str,
    dial: str,
    at: datetime,
) -> None:
    """Ring ``extension``'s phone (the first channel of its ``dial`` string), then the task's
    customer (a dialable one: the caller checks); RingMeRefused says why not (an attempt
    in flight, the limit, Asterisk)."""
    assert task.customer is not None
    first = dial.split("&")[0]
    attempt = task.ringme_attempts + 1
    call = RingMeCall(task.id, extension, first, task.customer, task.did, attempt)
    await ringme.start(call)
    async with engine.begin() as conn:
        await tasks.record_ringme_attempt(conn, task.id, at=at, manager=extension)
