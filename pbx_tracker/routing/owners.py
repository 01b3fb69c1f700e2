"""Who owns a caller in the CRM: the manager a customer's call rings first (``crm_owner``).

`OwnerLookup` asks the CRMs' finders in order (the first that names an owner
wins) and answers within its deadline whatever the CRMs do: a CRM that is slow
or fails costs the owner's ring only, the lookup logs
``routing.crm_owner_unknown`` and answers None, and routing goes on.

Rules:

- answers (an owner, and "nobody") are kept per caller number for the cache
  time, at most `size` numbers (the oldest dropped); a timeout or an error is
  not kept, so the next call asks again;
- one lookup per caller is in flight at a time; one still running at the
  deadline goes on in the background and fills the cache, so the caller's next
  call is answered at once;
- one CRM failing does not stop the next one from being asked; when none names
  an owner and one failed, the lookup failed (its "nobody" is not kept);
- nothing of an error's text is logged (it may hold a webhook's URL): its type
  only.

``lookups``, ``hits``, ``timeouts`` and ``errors`` count for /metrics.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence

import structlog

__all__ = ["Finder", "OwnerLookup"]

log = structlog.get_logger(__name__)

Finder = Callable[[str], Awaitable[str | None]]  # caller (E.164) -> owner's extension


class OwnerLookup:
    """Each caller's owner from the CRMs, within a deadline, cached."""

    def __init__(
        self,
        finders: Sequence[Finder],
        *,
        deadline: float = 0.4,
        cache_seconds: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
        size: int = 10_000,
    ) -> None:
        self._finders = tuple(finders)
        self._deadline = deadline
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._size = size
        self._known: OrderedDict[str, tuple[str | None, float]] = OrderedDict()  # -> (owner, until)
        self._running: dict[str, asyncio.Task[str | None]] = {}
        self.lookups = 0
        self.hits = 0
        self.timeouts = 0
        self.errors = 0

    async def owner_of(self, caller: str) -> str | None:
        """The extension of the manager who owns ``caller`` in the CRM; None when nobody does,
        or the CRMs did not say within the deadline."""
        self.lookups += 1
        known = self._cached(caller)
        if known is not None:
            self.hits += 1
            return known[0]
        if caller not in self._running and len(self._running) >= self._size:
            return _unknown("too many lookups are waiting for the CRM")
        task = self._running.get(caller) or self._start(caller)
        deadline = asyncio.timeout(self._deadline)
        try:
            async with deadline:
                return await asyncio.shield(task)
        except TimeoutError as error:
            if not deadline.expired():  # the CRM's own timeout, not ours
                return self._failed(error)
            self.timeouts += 1
            return _unknown(f"the CRM did not answer within {self._deadline * 1000:.0f} ms")
        except Exception as error:  # never let a CRM stop a call from ringing
            return self._failed(error)
        except asyncio.CancelledError as error:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # this ask itself is stopped (the call hung up, shutdown)
            return self._failed(error)  # the lookup was stopped, not the ask

    async def close(self) -> None:
        """Stop the lookups still running (at shutdown)."""
        running = list(self._running.values())
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)

    # --- the cache -------------------------------------------------------------------

    def _cached(self, caller: str) -> tuple[str | None, float] | None:
        known = self._known.get(caller)
        if known is None:
            return None
        if known[1] <= self._clock():
            del self._known[caller]
            return None
        self._known.move_to_end(caller)
        return known

    def _keep(self, caller: str, owner: str | None) -> None:
        if self._cache_seconds <= 0:
            return
        self._known[caller] = (owner, self._clock() + self._cache_seconds)
        self._known.move_to_end(caller)
        while len(self._known) > self._size:
            self._known.popitem(last=False)

    # --- asking the CRMs ---------------------------------------------------------------

    def _start(self, caller: str) -> asyncio.Task[str | None]:
        task = asyncio.create_task(self._ask_crms(caller), name="crm-owner")
        self._running[caller] = task
        task.add_done_callback(lambda done: self._finished(caller, done))
        return task

    async def _ask_crms(self, caller: str) -> str | None:
        failure: Exception | None = None
        for finder in self._finders:
            try:
                owner = await finder(caller)
            except Exception as error:  # the next CRM may still know
                failure = failure or error
                continue
            if isinstance(owner, str) and owner.strip():
                return owner.strip()
        if failure is not None:
            raise failure
        return None

    def _finished(self, caller: str, task: asyncio.Task[str | None]) -> None:
        """A lookup ended (within the deadline or later): keep its answer."""
        if self._running.get(caller) is task:
            del self._running[caller]
        if task.cancelled() or task.exception() is not None:
            return  # an error is logged by the asks that waited for it, and not kept
        self._keep(caller, task.result())

    def _failed(self, error: BaseException) -> str | None:
        self.errors += 1
        return _unknown(f"the CRM lookup failed ({type(error).__name__})")


def _unknown(reason: str) -> str | None:
    """Log why the owner is not known (never an error's text) and answer None."""
    log.warning("routing.crm_owner_unknown", reason=reason)
    return None
