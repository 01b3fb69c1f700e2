"""A real SMTP server on loopback (aiosmtpd) that keeps what it receives, for the tests.

`Mailbox` runs aiosmtpd's threaded `Controller` on 127.0.0.1 and a free port
and lets async tests wait, bounded, for messages to arrive.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import threading
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from waiting import until


class _Handler:
    def __init__(self, on_message: Callable[[Envelope], None]) -> None:
        self._on_message = on_message

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self._on_message(envelope)
        return "250 Message accepted for delivery"


class Mailbox(Controller):
    """Every message accepted, in order; `wait_for(n)` waits until there are n."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []
        self._lock = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
        super().__init__(_Handler(self._received), hostname="127.0.0.1", port=0)

    def _create_server(self) -> Any:
        return self._bind()

    async def _bind(self) -> asyncio.AbstractServer:
        server: asyncio.AbstractServer = await super()._create_server()
        self.port = server.sockets[0].getsockname()[1]  # port 0: read back the real one
        return server

    def _received(self, envelope: Envelope) -> None:  # in the server's thread
        with self._lock:
            self.envelopes.append(envelope)
            waiters = list(self._waiters)
        for loop, event in waiters:
            loop.call_soon_threadsafe(event.set)

    @property
    def messages(self) -> list[EmailMessage]:
        with self._lock:
            raw = [bytes(e.original_content or b"") for e in self.envelopes]
        return [email.message_from_bytes(r, policy=email.policy.default) for r in raw]  # type: ignore[misc]

    async def wait_for(self, count: int, timeout: float = 15.0) -> list[EmailMessage]:  # noqa: ASYNC109
        """At least `count` messages, waiting (bounded) for them to arrive."""
        event = asyncio.Event()
        entry = (asyncio.get_running_loop(), event)
        with self._lock:
            self._waiters.append(entry)
        try:  # the server thread sets the event through the loop: no arrival is lost
            await until(lambda: len(self.envelopes) >= count, event, timeout)
        finally:
            with self._lock:
                self._waiters.remove(entry)
        return self.messages
