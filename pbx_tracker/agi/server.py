"""Our FastAGI server: one asyncio task per call Asterisk sends to `agi://host:port/<script>`.

Each connection is checked against the allow-list and the session limit, its
request header read with a size bound and `header_timeout`, and handed to the
handler registered for its script as an `AgiSession`.  When the handler
returns, the connection is closed and Asterisk goes on with the dialplan.

It does not repeat panoramisk's FastAGI defects (ASTERISK.md 1.4): a client
that connects and closes ends its session at once instead of spinning, an
unsolicited `HANGUP` line never shifts replies by one, routes match the script
name without its `?query`, and a truncated UTF-8 caller name cannot break the
request.  Every fault is one log line; the session is closed and the server
goes on serving.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import structlog

from pbx_tracker.agi.protocol import AgiProtocolError, AgiRequest
from pbx_tracker.agi.session import (
    MAX_LINE_BYTES,
    MAX_REPLY_BYTES,
    AgiSession,
    AgiSessionClosed,
    CloseReason,
)
from pbx_tracker.agi.settings import AgiSettings

__all__ = [
    "MAX_HEADER_BYTES",
    "MAX_LINE_BYTES",
    "MAX_REPLY_BYTES",
    "AgiServerStats",
    "AgiSession",
    "AgiSessionClosed",
    "FastAgiServer",
    "Handler",
]

log = structlog.get_logger(__name__)

MAX_HEADER_BYTES = 64 * 1024
_CLOSE_GRACE = 1.0
_STOP_GRACE = 2.0

Handler = Callable[[AgiSession], Awaitable[None]]


@dataclass(slots=True)
class AgiServerStats:
    """Session counters.  Every finished session is counted in exactly one outcome:

    sessions == active + completed + refused + malformed + timeouts + hangups
    + errors + cancelled.  `hangups` counts clients that went away, including
    port checks that connect and close without a request.
    """

    sessions: int = 0
    completed: int = 0
    refused: int = 0
    malformed: int = 0
    timeouts: int = 0
    hangups: int = 0
    errors: int = 0
    cancelled: int = 0
    active: int = 0

    def count(self, reason: CloseReason) -> None:
        if reason == "hangup":
            self.hangups += 1
        elif reason == "timeout":
            self.timeouts += 1
        else:
            self.malformed += 1


class FastAgiServer:
    """The FastAGI listener: routes each call to `handlers[script]`.

    `port` is the bound port once started (`settings.port` may be 0).
    """

    def __init__(self, handlers: Mapping[str, Handler], settings: AgiSettings) -> None:
        self.handlers = dict(handlers)
        self.settings = settings
        self.port = settings.port
        self.stats = AgiServerStats()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()

    # lifecycle

    async def start(self) -> None:
        """Listen on `settings.host:settings.port`."""
        self._server = await asyncio.start_server(
            self._serve_connection,
            self.settings.host,
            self.settings.port,
            limit=MAX_HEADER_BYTES,
            reuse_address=True,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("agi.listening", host=self.settings.host, port=self.port)

    async def stop(self) -> None:
        """Stop listening, cut the running sessions and wait (bounded) for them to end."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=_STOP_GRACE)
        if server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_STOP_GRACE):
                    await server.wait_closed()
        if server is not None:
            log.info("agi.stopped", port=self.port, sessions_cut=len(tasks))

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def wait_until(
        self,
        predicate: Callable[[], bool],
        timeout: float = 5.0,  # noqa: ASYNC109 - a plain deadline keeps callers short
    ) -> None:
        """Wait (bounded) until `predicate()` holds; re-checked whenever a session changes."""
        try:
            async with asyncio.timeout(timeout):
                while not predicate():
                    await self._changed.wait()
        except TimeoutError:
            message = f"FastAGI server: condition not met in {timeout} s: {self.stats}"
            raise TimeoutError(message) from None

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # one connection

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        peer = _peer_ip(writer)
        self.stats.sessions += 1
        try:
            if self._admit(peer):
                self.stats.active += 1
                self._notify()
                try:
                    await self._run_session(reader, writer, peer)
                finally:
                    self.stats.active -= 1
        except asyncio.CancelledError:
            # stop(): end quietly.  Not re-raised: Python 3.11's start_server calls
            # task.exception() on the finished task, which raises for a cancelled one.
            self.stats.cancelled += 1
            writer.transport.abort()
            log.debug("agi.session_cut", peer=peer, reason="server stopping")
        finally:
            try:
                await _close(writer)
            finally:
                if task is not None:
                    self._tasks.discard(task)
                self._notify()

    def _admit(self, peer: str) -> bool:
        if not self.settings.allows(peer):
            self.stats.refused += 1
            log.warning("agi.client_not_allowed", peer=peer)
            return False
        if self.stats.active >= self.settings.max_sessions:
            self.stats.refused += 1
            log.warning("agi.too_many_sessions", peer=peer, limit=self.settings.max_sessions)
            return False
        return True

    async def _run_session(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str
    ) -> None:
        request = await self._read_request(reader, peer)
        if request is None:
            return
        handler = self.handlers.get(request.script)
        if handler is None:
            self.stats.refused += 1
            known = sorted(self.handlers)
            log.warning(
                "agi.unknown_script",
                peer=peer,
                script=request.script,
                uniqueid=request.uniqueid,
                known=known,
            )
            return
        session = AgiSession(request, peer, reader, writer, self.settings.command_timeout)
        await self._run_handler(handler, session)

    async def _read_request(self, reader: asyncio.StreamReader, peer: str) -> AgiRequest | None:
        """The request header; None (counted and logged) when there is no usable one."""
        lines: list[str] = []
        try:
            async with asyncio.timeout(self.settings.header_timeout):
                complete = await _read_header(reader, lines)
            if complete:
                return AgiRequest.parse(lines)
        except TimeoutError:
            self.stats.timeouts += 1
            timeout = self.settings.header_timeout
            log.warning("agi.request_timeout", peer=peer, timeout=timeout)
            return None
        except AgiProtocolError as error:
            self.stats.malformed += 1
            log.warning("agi.request_malformed", peer=peer, problem=str(error))
            return None
        except ConnectionError:
            pass  # reset by the client: it went away, like an EOF
        self.stats.hangups += 1
        if lines:
            log.info("agi.request_cut_short", peer=peer, lines=len(lines))
        else:
            log.debug("agi.closed_without_request", peer=peer)
        return None

    async def _run_handler(self, handler: Handler, session: AgiSession) -> None:
        try:
            try:
                await handler(session)
            finally:
                session.end()
        except AgiSessionClosed as closed:
            self._session_closed(session, closed)
        except Exception:
            self.stats.errors += 1
            session.log.exception("agi.handler_failed")
        else:
            if session.closed is not None:
                self._session_closed(session, session.closed)
            else:
                self.stats.completed += 1
                session.log.debug("agi.session_done", hung_up=session.hung_up)

    def _session_closed(self, session: AgiSession, closed: AgiSessionClosed) -> None:
        self.stats.count(closed.reason)
        if closed.reason == "hangup":
            session.log.info("agi.session_closed", reason=closed.reason, detail=str(closed))
        else:
            session.log.warning("agi.session_closed", reason=closed.reason, detail=str(closed))


async def _read_header(reader: asyncio.StreamReader, lines: list[str]) -> bool:
    """Append the header lines to `lines`; True at the blank line, False at end of stream.

    The first four bytes tell a FastAGI request (``agi_``) from a stranger (an
    HTTP probe) at once; the rest, which Asterisk sends in one piece, is taken
    in one read up to the blank line.
    """
    try:
        start = await reader.readexactly(len(_HEADER_START))
    except asyncio.IncompleteReadError as cut:
        _add_lines(cut.partial, lines)
        return False
    if start != _HEADER_START:
        try:
            first = start + await reader.readline()
        except ValueError:
            raise AgiProtocolError(f"request line over {MAX_LINE_BYTES} bytes") from None
        _add_lines(first, lines)
        AgiRequest.parse(lines)  # raises, naming the line
    try:
        block = start + await reader.readuntil(b"\n\n")
    except asyncio.IncompleteReadError as cut:
        _add_lines(start + cut.partial, lines)
        return False
    except asyncio.LimitOverrunError:
        raise AgiProtocolError(f"request header over {MAX_HEADER_BYTES} bytes") from None
    _add_lines(block, lines)
    return True


_HEADER_START = b"agi_"


def _add_lines(block: bytes, lines: list[str]) -> None:
    """The lines of ``block`` (without the blank line that ends a header) into ``lines``."""
    if not block:
        return
    for raw in block.rstrip(b"\n").split(b"\n"):
        if len(raw) >= MAX_LINE_BYTES:
            raise AgiProtocolError(f"request line over {MAX_LINE_BYTES} bytes")
        lines.append(raw.decode("utf-8", errors="replace").rstrip("\r"))


def _peer_ip(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return str(peer or "")


async def _close(writer: asyncio.StreamWriter) -> None:
    """Close the connection; abort it if the client does not take the last bytes in time."""
    writer.close()
    try:
        async with asyncio.timeout(_CLOSE_GRACE):
            await writer.wait_closed()
    except (TimeoutError, ConnectionError):
        writer.transport.abort()
