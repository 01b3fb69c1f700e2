"""The daemon's background loops, supervised: the first one to fail ends the daemon;
and the signals that stop it.

A loop that raises is reported once (to ``failed``, which the daemon logs) and
wakes `Loops.wait`, so the daemon stops as for SIGTERM and exits non-zero
(systemd restarts it) instead of running on half alive.  A loop that returns
has simply nothing (more) to do, unless it was started with ``ends_daemon``
(the AMI listener).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any

__all__ = ["Loops", "install_stop_signals", "others_ended"]

Failed = Callable[[str, BaseException], None]


def install_stop_signals(stop: asyncio.Event) -> None:
    """SIGTERM (systemd's stop) and SIGINT (Ctrl-C) set ``stop``."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


async def others_ended(timeout: float) -> list[str]:  # noqa: ASYNC109 (bounded, never raises)
    """Wait up to ``timeout`` seconds for the tasks running besides this one to end; the
    names of those that did not.

    Called once everything was stopped, so that a task still finishing (a job cut at
    stop closing its database connection) ends by itself: cancelled a second time by
    asyncio.run's last clean-up, such a close can wait for ever and the process with it.
    """
    others = asyncio.all_tasks() - {asyncio.current_task()}
    if not others:
        return []
    _, late = await asyncio.wait(others, timeout=timeout)
    return sorted(task.get_name() for task in late)


class Loops:
    """Named background tasks, watched from their start to their end."""

    def __init__(self, failed: Failed) -> None:
        self._tasks: dict[str, asyncio.Task[object]] = {}
        self._failed = failed
        self._ended = asyncio.Event()
        self.failure: tuple[str, BaseException] | None = None

    def start(
        self, name: str, loop: Coroutine[Any, Any, object], *, ends_daemon: bool = False
    ) -> None:
        """Run ``loop`` as the task ``name``; ``ends_daemon``: its end is the daemon's end."""
        task = asyncio.create_task(loop, name=name)
        self._tasks[name] = task
        task.add_done_callback(partial(self._done, name, ends_daemon))

    async def wait(self, stop: asyncio.Event) -> None:
        """Until ``stop`` is set, a loop fails or one that ends the daemon ended."""
        waiters = {asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._ended.wait())}
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def end(self, name: str) -> None:
        """Wait for the loop ``name`` to end (it was told to end in its own way)."""
        task = self._tasks.pop(name, None)
        if task is not None:
            await asyncio.wait({task})

    async def cancel(self) -> None:
        """Cancel the loops still running and wait until they ended."""
        tasks, self._tasks = list(self._tasks.values()), {}
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    def _done(self, name: str, ends_daemon: bool, task: asyncio.Task[object]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            self.failure = self.failure or (name, error)
            self._failed(name, error)
        if error is not None or ends_daemon:
            self._ended.set()
