"""One client connected to the simulated manager interface: reading its actions,
writing to it, its login and the event classes it asked for."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from collections.abc import Mapping

from pbx_tracker.sim.wire import header


def event_classes(value: str) -> frozenset[str] | None:
    """The `Events:` header of a Login as a set of classes; None means every event."""
    text = value.strip().lower()
    if text in ("", "on", "yes", "true", "all"):
        return None
    if text in ("off", "no", "false"):
        return frozenset()
    return frozenset(part.strip() for part in text.split(",") if part.strip())


class AmiSession:
    """One client's connection, logged in or not."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.logged_in = False
        self.classes: frozenset[str] | None = None
        self.challenge = ""
        self.lock = asyncio.Lock()

    @property
    def alive(self) -> bool:
        return not self.writer.transport.is_closing()

    def wants(self, message: Mapping[str, str]) -> bool:
        if self.classes is None or "Event" not in message:
            return True
        privilege = set(message.get("Privilege", "").split(",")) - {"all"}
        return bool(self.classes & privilege)

    def new_challenge(self) -> str:
        """A fresh challenge for an MD5 login."""
        self.challenge = str(secrets.randbelow(10**9))
        return self.challenge

    def credentials_ok(self, action: Mapping[str, str], username: str, secret: str) -> bool:
        """A Login's user and secret (or MD5 key over the challenge) are right."""
        if header(action, "Username") != username:
            return False
        if header(action, "AuthType").lower() == "md5":
            if not self.challenge:
                return False
            expected = hashlib.md5((self.challenge + secret).encode()).hexdigest()
            return hmac.compare_digest(header(action, "Key").lower(), expected)
        return hmac.compare_digest(header(action, "Secret"), secret)

    async def send(self, data: bytes, chunk_size: int | None, limit: float | None) -> None:
        """Write `data` (in `chunk_size` pieces, each its own TCP read) or drop the client."""
        async with self.lock:
            try:
                if chunk_size:
                    await self._send_chunked(data, chunk_size)
                elif self.alive:
                    self.writer.write(data)
                    await asyncio.wait_for(self.writer.drain(), limit)
            except (ConnectionError, TimeoutError):
                self.abort()

    async def _send_chunked(self, data: bytes, chunk_size: int) -> None:
        for offset in range(0, len(data), chunk_size):
            if not self.alive:
                return
            self.writer.write(data[offset : offset + chunk_size])
            await self.writer.drain()
            # two loop turns: the reader gets this piece before the next one is written
            await asyncio.sleep(0)
            await asyncio.sleep(0)

    async def read_action(self) -> dict[str, str] | None:
        """The next action (headers up to a blank line); None at end of stream."""
        fields: dict[str, str] = {}
        while True:
            try:
                raw = await self.reader.readline()
            except ValueError:  # a line over the limit: Asterisk drops it too
                fields = {}
                continue
            if not raw:
                return None
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            if not line.strip():
                if fields:
                    return fields
                continue
            key, sep, value = line.partition(":")
            if sep and key.strip():
                key, value = key.strip(), value.strip()
                fields[key] = f"{fields[key]}\n{value}" if key in fields else value

    def abort(self) -> None:
        self.writer.transport.abort()
