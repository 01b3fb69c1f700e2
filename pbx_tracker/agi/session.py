"""One call's FastAGI dialogue: commands out, Asterisk's replies paired with them.

An unsolicited `HANGUP` line (Asterisk sends it when the channel hangs up, at
any moment) is noted and skipped, as are `100 Trying` lines, so a reply always
belongs to the command before it.  One timer per session bounds the wait for
each reply.
"""

from __future__ import annotations

import asyncio
import re
from typing import Literal

import structlog
from structlog.typing import FilteringBoundLogger

from pbx_tracker.agi.protocol import (
    AgiProtocolError,
    AgiReply,
    AgiRequest,
    ReplyAssembler,
    parse_reply,
    quote,
)

__all__ = ["MAX_LINE_BYTES", "MAX_REPLY_BYTES", "AgiSession", "AgiSessionClosed", "CloseReason"]

log = structlog.get_logger(__name__)

MAX_LINE_BYTES = 16 * 1024
MAX_REPLY_BYTES = 64 * 1024
_DRAIN_ABOVE = 64 * 1024  # a command line is short: wait for the socket only when it backs up

CloseReason = Literal["hangup", "timeout", "malformed"]


class AgiSessionClosed(Exception):
    """The client went away (`hangup`), timed out (`timeout`) or broke the protocol."""

    def __init__(self, reason: CloseReason, detail: str) -> None:
        super().__init__(detail)
        self.reason: CloseReason = reason


class AgiSession:
    """One call's FastAGI dialogue: the request, and commands with their replies.

    `hung_up` turns True once Asterisk reports that the channel hung up; most
    commands then get `511`.  `log` is bound to the peer, script and uniqueid.
    """

    def __init__(
        self,
        request: AgiRequest,
        peer: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        command_timeout: float,
    ) -> None:
        self.request = request
        self.peer = peer
        self.hung_up = False
        self.closed: AgiSessionClosed | None = None
        self.log: FilteringBoundLogger = log.bind(
            peer=peer, script=request.script, uniqueid=request.uniqueid
        )
        self._reader = reader
        self._writer = writer
        self._command_timeout = command_timeout
        self._watchdog = _Watchdog(writer.transport)

    async def command(
        self,
        line: str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - a long EXEC Dial needs its own bound
    ) -> AgiReply:
        """Send one command line and return Asterisk's final reply to it.

        `timeout` (default: the settings' `command_timeout`) bounds the wait for
        the reply.  Raises `AgiSessionClosed` when the client is gone, silent
        for too long or sends something that is not a reply.
        """
        if "\n" in line or "\r" in line:
            raise ValueError(f"an AGI command is one line: {line!r}")
        if self.closed is not None:
            raise AgiSessionClosed(self.closed.reason, f"{line!r} after: {self.closed}")
        self._watchdog.arm(self._command_timeout if timeout is None else timeout)
        try:
            self._writer.write(line.encode("utf-8") + b"\n")
            if self._writer.transport.get_write_buffer_size() > _DRAIN_ABOVE:
                await self._writer.drain()
            return await self._read_reply()
        except ConnectionError as error:
            if self._watchdog.fired:
                raise self._close("timeout", f"no reply to {line!r} in time") from None
            raise self._close("hangup", f"connection lost sending {line!r}: {error}") from None
        except AgiProtocolError as error:
            raise self._close("malformed", f"bad reply to {line!r}: {error}") from None
        finally:
            self._watchdog.disarm()

    async def get_variable(self, name: str) -> str | None:
        """The channel variable's value; None when unset (or the command failed)."""
        reply = await self.command(f"GET VARIABLE {_name(name)}")
        if reply.code == 200 and reply.result == "1":
            return reply.data or ""
        if reply.code != 200:
            self._failed(reply, "GET VARIABLE")
        return None

    async def set_variable(self, name: str, value: str) -> None:
        """Set a channel variable (the dialplan reads it after the AGI returns)."""
        reply = await self.command(f"SET VARIABLE {_name(name)} {quote(value)}")
        if not reply.ok:
            self._failed(reply, "SET VARIABLE")

    async def verbose(self, message: str, level: int = 1) -> None:
        """Write `message` to the Asterisk console at verbosity `level`."""
        reply = await self.command(f"VERBOSE {quote(message)} {level}")
        if not reply.ok:
            self._failed(reply, "VERBOSE")

    async def _readline(self) -> bytes:
        try:
            return await self._reader.readline()
        except ValueError:  # a line over the stream's limit
            raise AgiProtocolError(f"reply line over {MAX_LINE_BYTES} bytes") from None

    async def _read_reply(self) -> AgiReply:
        raw = await self._readline()
        if raw.startswith(b"200 result=") and raw.endswith(b"\n") and len(raw) < MAX_LINE_BYTES:
            return _plain_reply(raw)  # the usual answer, in one line
        return await self._assemble_reply(raw)

    async def _assemble_reply(self, raw: bytes) -> AgiReply:
        """The reply starting with line ``raw``: skips HANGUP and 100, joins 520- blocks."""
        assembler = ReplyAssembler()
        size = 0
        while True:
            if not raw.endswith(b"\n"):
                raise ConnectionResetError("the client closed the connection")
            if len(raw) >= MAX_LINE_BYTES:
                raise AgiProtocolError(f"reply line over {MAX_LINE_BYTES} bytes")
            size += len(raw)
            if size > MAX_REPLY_BYTES:
                raise AgiProtocolError(f"reply over {MAX_REPLY_BYTES} bytes")
            reply = assembler.feed(raw.decode("utf-8", errors="replace").rstrip("\r\n"))
            if assembler.hung_up and not self.hung_up:
                self.hung_up = True
                self.log.info("agi.channel_hung_up")
            if reply is not None:
                return reply
            raw = await self._readline()

    def _close(self, reason: CloseReason, detail: str) -> AgiSessionClosed:
        self.closed = AgiSessionClosed(reason, detail)
        self._watchdog.cancel()
        return self.closed

    def end(self) -> None:
        """The dialogue is over: no more reply deadlines."""
        self._watchdog.cancel()

    def _failed(self, reply: AgiReply, command: str) -> None:
        """Log a refused command: expected after a hang-up, a bug or a dialplan problem before."""
        if self.hung_up:
            self.log.debug("agi.command_failed", command=command, reply=reply.text)
        else:
            self.log.warning("agi.command_failed", command=command, reply=reply.text)


class _Watchdog:
    """One timer per session that aborts the connection when a reply is overdue.

    Cheaper than a timeout context per command: arming only moves a deadline,
    and the timer re-arms itself when it fires before the current one.
    """

    def __init__(self, transport: asyncio.WriteTransport) -> None:
        self._transport = transport
        self._loop = asyncio.get_running_loop()
        self._deadline: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.fired = False

    def arm(self, seconds: float) -> None:
        self._deadline = self._loop.time() + seconds
        if self._timer is None:
            self._timer = self._loop.call_at(self._deadline, self._check)

    def disarm(self) -> None:
        self._deadline = None

    def cancel(self) -> None:
        self._deadline = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check(self) -> None:
        self._timer = None
        if self._deadline is None:
            return
        if self._loop.time() < self._deadline:
            self._timer = self._loop.call_at(self._deadline, self._check)
            return
        self.fired = True
        self._transport.abort()


def _plain_reply(raw: bytes) -> AgiReply:
    """``200 result=N`` with an optional ``(data)``, parsed without the general path."""
    text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
    result, _, rest = text[11:].partition(" ")
    if not rest:
        return AgiReply(200, result, None, text)
    return parse_reply([text])


_VARIABLE_NAME = re.compile(r'[^\s"]+')


def _name(name: str) -> str:
    """A channel variable name, checked to be one word."""
    if not _VARIABLE_NAME.fullmatch(name):
        raise ValueError(f"not a channel variable name: {name!r}")
    return name
