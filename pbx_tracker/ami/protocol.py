"""panoramisk's `AMIProtocol` with byte-level framing, size limits and a safe dispatch.

panoramisk 1.4 decodes every TCP chunk on its own with `errors="ignore"`, so a
UTF-8 character split across two reads is silently dropped, and it re-joins the
undecoded tail of a large message with every chunk (quadratic).  `AmiProtocol`
keeps the bytes in one `bytearray`, splits on `b"\\r\\n\\r\\n"`, decodes each
complete message with `errors="replace"` and then runs panoramisk's own
per-message path (`Message.from_line` + `handle_message`): responses carrying
the ActionID of one of our actions complete that action, everything else is
handed to `on_message`, which must not raise (it is guarded anyway: an
exception escaping `data_received` makes asyncio close the connection).

It also fixes the factory wiring (the sink is known before the first byte),
fails pending actions with `ConnectionError` when the connection goes away
instead of queueing them for a re-send, refuses to send on a closed transport
and turns TCP keepalive on.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Mapping
from typing import Any

import structlog
from panoramisk import actions, ami_protocol
from panoramisk.message import Message

from pbx_tracker.ami.messages import parse_message

log = structlog.get_logger(__name__)

MAX_MESSAGE_BYTES = 1024 * 1024
SEPARATOR = b"\r\n\r\n"
_BANNER = b"Asterisk Call Manager/"
_BANNER_MAX = 256
_FORGOTTEN_MAX = 256
_KEEPALIVE = {"TCP_KEEPIDLE": 60, "TCP_KEEPINTVL": 10, "TCP_KEEPCNT": 5}


class AmiAction(actions.Action):  # type: ignore[misc]
    """A panoramisk `Action` with a plain "list or single response" rule.

    panoramisk guesses "multi-message" from the first response, including
    "Originate successfully queued" (then waits for `OriginateResponse`, and
    raises `KeyError` when the action had no `Async` header).  Here an action
    collects a list only when Asterisk announces one (`EventList: start`,
    `SubEvent: Start` or "... will follow"); any later event carrying the same
    ActionID (e.g. `OriginateResponse`) is an ordinary event.

    `on_complete` runs synchronously, inside `data_received`, when the last
    message arrives, so whatever it queues is ordered exactly against events.
    """

    def __init__(
        self,
        fields: Mapping[str, str],
        on_complete: Callable[[list[Message]], None] | None = None,
    ) -> None:
        super().__init__(dict(fields))
        self.on_complete = on_complete

    @property
    def multi(self) -> bool:
        first = self.responses[0]
        return bool(
            str(first.get("EventList", "")).lower() == "start"
            or first.get("SubEvent", "") == "Start"
            or "will follow" in str(first.get("Message", "")).lower()
        )

    @property
    def name(self) -> str:
        return str(self.get("Action", "?"))

    def add_message(self, message: Message) -> bool:
        done = bool(super().add_message(message))
        if done and self.on_complete is not None:
            self.on_complete(list(self.responses))
        return done

    def __repr__(self) -> str:  # never the headers: a Login action holds the secret
        return f"<AmiAction {self.name} {self.id}>"


class AmiProtocol(ami_protocol.AMIProtocol):  # type: ignore[misc]
    """One AMI connection.  `lost` resolves with the reason once it is gone."""

    def __init__(
        self,
        on_message: Callable[[Message], None],
        *,
        on_event: Callable[[dict[str, str]], None] | None = None,
        max_message: int = MAX_MESSAGE_BYTES,
        on_dropped: Callable[[int], None] | None = None,
        on_malformed: Callable[[], None] | None = None,
    ) -> None:
        self._on_message = on_message
        self._on_event = on_event
        self._on_dropped = on_dropped or (lambda size: None)
        self._on_malformed = on_malformed or (lambda: None)
        self._max = max_message
        self._buffer = bytearray()
        self._scan = 0
        self._discarding = 0  # bytes thrown away of the oversized message being skipped
        self._forgotten: dict[str, None] = {}  # ActionIDs we stopped waiting for
        self.lost: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    # -- connection --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.factory = self  # handle_message() dispatches to self.factory
        self.encoding = "utf-8"
        self.log = logging.getLogger(ami_protocol.__name__)
        _enable_keepalive(transport)

    def connection_lost(self, exc: BaseException | Message | None) -> None:
        reason = _reason(exc)
        self._fail_pending(ConnectionError(f"AMI connection lost: {reason}"))
        self.closed = True
        if not self.transport.is_closing():
            self.transport.close()
        if not self.lost.done():
            self.lost.set_result(reason)

    def close(self) -> None:
        self.connection_lost(None)

    def abort(self, reason: str) -> None:
        """Drop the connection now (no Logoff), e.g. after an unanswered Ping."""
        self.transport.abort()
        self.connection_lost(ConnectionAbortedError(reason))

    def dispatch(self, message: Message) -> None:
        """panoramisk's `factory.dispatch`: every event not owned by one of our actions."""
        try:
            self._on_message(message)
        except Exception:
            log.exception("ami.callback_failed", ami_event=str(message.get("Event", "")))

    # -- actions -----------------------------------------------------------

    def send(self, data: AmiAction, as_list: bool | None = None) -> asyncio.Future[Any]:
        if self.closed or self.transport.is_closing():
            raise ConnectionError("AMI connection is closed")
        return super().send(data, as_list=as_list)  # type: ignore[no-any-return]

    def forget(self, action: AmiAction) -> None:
        """Remove an action that will not be waited for any more (timed out).

        Late messages carrying its ActionID are dropped instead of being
        dispatched as events.
        """
        for key in (action.id, action.action_id):
            if self.responses.get(key) is action:
                del self.responses[key]
        self._forgotten[action.id] = None
        while len(self._forgotten) > _FORGOTTEN_MAX:
            del self._forgotten[next(iter(self._forgotten))]

    def handle_message(self, message: Message) -> None:
        if self._forgotten and message.action_id in self._forgotten:
            return
        super().handle_message(message)

    def prune(self) -> int:
        """Remove stale entries (futures already done or cancelled); returns how many."""
        stale = [key for key, action in self.responses.items() if action.future.done()]
        for key in stale:
            del self.responses[key]
        return len(stale)

    def _fail_pending(self, error: ConnectionError) -> None:
        pending = getattr(self, "responses", {})
        for action in pending.values():
            if not action.future.done():
                action.future.set_exception(error)
                action.future.exception()  # retrieved: no "never retrieved" noise
        pending.clear()

    # -- framing -----------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        if self._discarding and not self._skip_oversized():
            return
        if self.version is None and not self._read_banner():
            return
        start, pos = 0, self._scan
        while (end := buffer.find(SEPARATOR, pos)) >= 0:
            self._frame(start, end)
            start = pos = end + len(SEPARATOR)
        del buffer[:start]
        self._scan = max(0, len(buffer) - len(SEPARATOR) + 1)
        if len(buffer) > self._max:
            self._start_discarding()

    def _frame(self, start: int, end: int) -> None:
        if end - start > self._max:
            self._dropped(end - start)
            return
        text = self._buffer[start:end].decode("utf-8", errors="replace").strip("\r\n")
        if text:
            self._handle_text(text)

    def _handle_text(self, text: str) -> None:
        if self._on_event is not None and _plain_event(text):
            # The bulk of the stream: an event no action of ours waits for. Parsed
            # straight to a dict, skipping panoramisk's Message (3x the cost).
            self._deliver(parse_message(text))
            return
        try:
            message = Message.from_line(text)
            if message is None:
                self._on_malformed()
            else:
                self.handle_message(message)
        except Exception:
            self._on_malformed()
            log.exception("ami.message_failed", size=len(text))

    def _deliver(self, fields: dict[str, str]) -> None:
        assert self._on_event is not None
        try:
            self._on_event(fields)
        except Exception:
            log.exception("ami.callback_failed", ami_event=fields.get("Event", ""))

    def _read_banner(self) -> bool:
        """Consume `Asterisk Call Manager/x.y` if the stream starts with it."""
        head = bytes(self._buffer[: len(_BANNER)])
        if not self._buffer.startswith(_BANNER):
            if _BANNER.startswith(head):
                return False  # maybe the banner, not complete yet
            self.version = ""
            return True
        eol = self._buffer.find(b"\r\n")
        if eol < 0:
            return len(self._buffer) > _BANNER_MAX and self._no_banner()
        line = self._buffer[:eol].decode("utf-8", errors="replace")
        self.version = line.partition("/")[2].strip()
        del self._buffer[: eol + 2]
        return True

    def _no_banner(self) -> bool:
        self.version = ""
        return True

    def _start_discarding(self) -> None:
        keep = len(SEPARATOR) - 1
        self._dropped(len(self._buffer))
        self._discarding = len(self._buffer) - keep
        del self._buffer[:-keep]
        self._scan = 0

    def _skip_oversized(self) -> bool:
        """Throw bytes away until the end of the oversized message; True when found."""
        end = self._buffer.find(SEPARATOR)
        if end < 0:
            keep = len(SEPARATOR) - 1
            self._discarding += max(0, len(self._buffer) - keep)
            del self._buffer[:-keep]
            return False
        self._discarding = 0
        del self._buffer[: end + len(SEPARATOR)]
        self._scan = 0
        return True

    def _dropped(self, size: int) -> None:
        log.warning("ami.message_dropped", reason="message too large", size=size, limit=self._max)
        self._on_dropped(size)


def _reason(exc: BaseException | Message | None) -> str:
    if exc is None:
        return "connection closed"
    if isinstance(exc, Message):
        return "Asterisk shut down"
    return str(exc) or type(exc).__name__


def _enable_keepalive(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in _KEEPALIVE.items():
            if hasattr(socket, name):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)
    except OSError as error:
        log.warning("ami.keepalive_failed", reason=str(error))


def _plain_event(text: str) -> bool:
    """An event for every listener: no ActionID (not a reply to an action), not Shutdown."""
    return (
        text.startswith("Event: ")
        and "\nActionID:" not in text
        and not text.startswith("Event: Shutdown")
    )
