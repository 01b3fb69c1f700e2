"""What `AmiListener` reads from the config, with short timings for tests on loopback; a
listener logged in to a fake Asterisk; and the classes of the AMI user the project ships."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from pbx_tracker.ami.connection import AmiListener, Resync

MANAGER_CONF = Path(__file__).parents[1] / "config" / "asterisk" / "manager_pbx_tracker.conf"


def shipped_write_classes() -> frozenset[str]:
    """The ``write =`` classes of the AMI user the project ships."""
    for line in MANAGER_CONF.read_text(encoding="utf-8").splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "write":
            return frozenset(value.partition(";")[0].strip().split(","))
    raise AssertionError(f"no write= line in {MANAGER_CONF}")


@dataclass(frozen=True)
class ListenerSettings:
    secret: SecretStr
    host: str = "127.0.0.1"
    port: int = 0
    username: str = "tracker"
    events: str = "on"
    connect_timeout: float = 2.0
    ping_interval: float = 10.0
    ping_timeout: float = 2.0
    reconnect_initial: float = 0.02
    reconnect_max: float = 0.2


@contextlib.asynccontextmanager
async def resynced_listener(settings: ListenerSettings, wait: float) -> AsyncIterator[AmiListener]:
    """An AmiListener running in the test's loop, yielded once it has logged in and resynced
    (actions can be sent; its events queue holds what came after), closed when the block ends;
    ``wait``: the bound on logging in and on closing."""
    listener = AmiListener(settings)
    task = asyncio.create_task(listener.run())
    try:
        async with asyncio.timeout(wait):
            while not isinstance(await listener.events.get(), Resync):
                pass
        yield listener
    finally:
        await asyncio.wait_for(listener.close(), wait)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, wait)
