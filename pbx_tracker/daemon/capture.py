"""`pbx-tracker capture`: live AMI traffic appended to a JSON Lines file, for `replay`
and for the tests' traces."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from pbx_tracker.ami.capture import CaptureWriter
from pbx_tracker.ami.connection import AmiListener, AmiLoginError, ListenerItem
from pbx_tracker.calls.events import AmiEvent
from pbx_tracker.daemon.lifecycle import install_stop_signals

if TYPE_CHECKING:
    from pbx_tracker.config import Settings

__all__ = ["run_capture"]

log = structlog.get_logger(__name__)


async def run_capture(settings: Settings, out: Path, stop: asyncio.Event | None = None) -> int:
    """Append each AMI event to ``out`` until ``stop`` (SIGTERM, SIGINT); the exit code."""
    stop = stop or asyncio.Event()
    install_stop_signals(stop)
    listener = AmiListener(settings.ami)
    task = asyncio.create_task(listener.run())
    with out.open("a", encoding="utf-8") as stream:
        writer = CaptureWriter(stream)
        getter: asyncio.Task[ListenerItem] | None = None
        stopped = asyncio.create_task(stop.wait())
        while not stop.is_set() and not task.done():
            getter = asyncio.create_task(listener.events.get())
            await asyncio.wait({getter, stopped, task}, return_when=asyncio.FIRST_COMPLETED)
            if getter.done() and isinstance(item := getter.result(), AmiEvent):
                writer.write(item)
        if getter is not None:
            getter.cancel()
        stopped.cancel()
    await listener.close()
    log.info("daemon.capture_stopped", messages=writer.count, file=str(out))
    if task.done() and isinstance(task.exception(), AmiLoginError):
        log.error("daemon.capture_ami_login_rejected", reason=str(task.exception()))
        return 1
    return 0
