"""FakeAsterisk: a real AMI server on loopback for tests, benchmarks and the demo.

It speaks the protocol exactly as Asterisk does on the wire: the banner line
`Asterisk Call Manager/13.0.0`, `Key: Value` lines ended by CRLF, a blank line
after every message, the ActionID echoed on every response (and on every event
of an EventList).  It answers the actions the tracker uses (Login, Challenge,
Ping, CoreShowChannels, DeviceStateList, ExtensionStateList, QueueStatus,
Originate, Logoff, and for the check of the config ListCommands, Command,
ModuleCheck, ShowDialPlan and Getvar) and plays recorded or generated
event streams to every logged-in client, optionally at a given speed and cut
into tiny TCP writes.  Faults are one call away: `send_raw` (garbage),
`drop_connections` (link drop), `restart` (Asterisk restart on the same port),
`answer_pings = False` (a half-open peer).  Phones change state with
`set_device_state` and queue members pause with `set_paused` (`states` holds
the hints and queue members the lists report).  An `Originate` places a
simulated click-to-call callback (`sim.originate`): the manager's phone rings
`originate_delay` seconds, then picks up or not as `originate_outcomes` says
(by device, e.g. ``IAX2/101``, or by the customer's number).  `setup`
(`sim.introspection.PbxSetup`) holds its loaded modules, dialplan contexts,
known devices, CEL and the AMI user's write classes; an action outside those
classes is refused "Permission denied", as Asterisk does.  With `cel_file`, every
call event it plays is also logged in Asterisk's CEL file (`sim.cel_log`, with the
applications of `setup.cel_apps`; nothing while `setup.cel_enabled` is off), and
`happen_offline` lets calls happen with the CEL file as their only witness (no AMI
client hears them: the tracker is down).

Everything runs inside the caller's event loop; `stop()` closes every socket
and returns promptly.  Client handlers never leave unretrieved exceptions.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

import structlog

from pbx_tracker.ami.capture import read_capture
from pbx_tracker.sim.cel_log import CelFile
from pbx_tracker.sim.cel_recorder import CelRecorder
from pbx_tracker.sim.introspection import PbxSetup
from pbx_tracker.sim.originate import (
    QUEUED,
    OriginatedCall,
    OriginateIds,
    OriginateRequest,
    callback_call,
    originate_error,
)
from pbx_tracker.sim.states import PbxStates

log = structlog.get_logger(__name__)

BANNER = b"Asterisk Call Manager/13.0.0\r\n"
SNAPSHOT_KEYS = (
    "Channel",
    "ChannelState",
    "ChannelStateDesc",
    "CallerIDNum",
    "CallerIDName",
    "ConnectedLineNum",
    "ConnectedLineName",
    "Language",
    "AccountCode",
    "Context",
    "Exten",
    "Priority",
    "Uniqueid",
    "Linkedid",
)
_SESSION_EVENTS = frozenset({"FullyBooted", "SuccessfulAuth"})
_LINE_LIMIT = 64 * 1024
_STOP_GRACE = 2.0
_ORIGINATE_POLL = 0.05
Fields = list[tuple[str, str]]


# -- captures -----------------------------------------------------------------


def trace_events(path: str | Path) -> list[dict[str, str]]:
    """The call traffic of a capture file, each message with `_ts` (seconds, as text).

    `_ts` counts from the first returned message.  The capture session's own
    messages (action responses, `FullyBooted`, `SuccessfulAuth`) are left out.
    """
    return trace_with_epoch(path)[0]


def trace_with_epoch(path: str | Path) -> tuple[list[dict[str, str]], float]:
    """`trace_events` plus the epoch time of `_ts == 0` (0.0 for an empty trace)."""
    selected = [event for event in read_capture(path) if _is_call_traffic(event.fields)]
    if not selected:
        return [], 0.0
    start = selected[0].time
    messages = [{"_ts": f"{event.time - start:.6f}", **event.fields} for event in selected]
    return messages, start


def _is_call_traffic(fields: Mapping[str, str]) -> bool:
    event = fields.get("Event")
    return bool(event) and event not in _SESSION_EVENTS


# -- wire format --------------------------------------------------------------


def encode_message(message: Mapping[str, str], timestamp: float | None = None) -> bytes:
    """One AMI message as bytes; `_ts` is dropped, multi-line values become repeated headers.

    With `timestamp`, events get `Timestamp: <epoch>` where Asterisk puts it
    (`timestampevents = yes`): after `Event` and `Privilege`.
    """
    lines: list[str] = []
    stamp_after = "Privilege" if "Privilege" in message else "Event"
    stamp = timestamp is not None and "Event" in message and "Timestamp" not in message
    for key, value in message.items():
        if key == "_ts":
            continue
        lines.extend(f"{key}: {part}\r\n" for part in value.split("\n"))
        if stamp and key == stamp_after:
            lines.append(f"Timestamp: {timestamp:.6f}\r\n")
    lines.append("\r\n")
    return "".join(lines).encode("utf-8")


def _frame(fields: Fields) -> bytes:
    return "".join(f"{key}: {value}\r\n" for key, value in fields).encode("utf-8") + b"\r\n"


def _with_action_id(action: Mapping[str, str]) -> Fields:
    action_id = _header(action, "ActionID")
    return [("ActionID", action_id)] if action_id else []


def _header(action: Mapping[str, str], name: str) -> str:
    wanted = name.lower()
    for key, value in action.items():
        if key.lower() == wanted:
            return value
    return ""


def _event_classes(value: str) -> frozenset[str] | None:
    """The `Events:` header of a Login as a set of classes; None means every event."""
    text = value.strip().lower()
    if text in ("", "on", "yes", "true", "all"):
        return None
    if text in ("off", "no", "false"):
        return frozenset()
    return frozenset(part.strip() for part in text.split(",") if part.strip())


def _duration(seconds: float) -> str:
    whole = max(0, int(seconds))
    return f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


# -- one client ---------------------------------------------------------------


class _Session:
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


# -- the server ---------------------------------------------------------------

_Handler = Callable[[_Session, dict[str, str]], Awaitable[bool]]


class FakeAsterisk:
    """A simulated Asterisk Manager Interface on `host:port` (port 0 picks a free one)."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        username: str = "tracker",
        secret: str = "tracker-secret",
        timestamp_events: bool = False,
        chunk_size: int | None = None,
        answer_pings: bool = True,
        write_timeout: float | None = None,
        cel_file: str | Path | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.username = username
        self.secret = secret
        self.timestamp_events = timestamp_events
        self.chunk_size = chunk_size
        self.answer_pings = answer_pings
        self.write_timeout = write_timeout
        # Asterisk's CEL log (cel_custom's Master.csv); None: no CEL written
        self.cel_file = None if cel_file is None else Path(cel_file)
        self._cel: CelRecorder | None = None
        self.actions: list[dict[str, str]] = []
        self.live_channels: dict[str, dict[str, str]] = {}
        self.states = PbxStates()
        self.setup = PbxSetup()
        # Originate: outcome by device ("IAX2/101") or customer number; "answer" if absent
        self.originate_outcomes: dict[str, str] = {}
        self.originate_delay = 0.01  # seconds the manager's phone rings before the outcome
        self.originate_speed: float | None = None  # the rest of the call: None plays it at once
        self.clock: Callable[[], float] = time.time  # when an originated call starts (epoch s)
        self.originated: list[OriginatedCall] = []
        self._originate_ids = OriginateIds()
        self.logins = 0
        self._created: dict[str, float] = {}
        self._server: asyncio.Server | None = None
        self._sessions: set[_Session] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()
        self._booted = time.monotonic()
        self._handlers: dict[str, _Handler] = {
            "login": self._login,
            "challenge": self._challenge,
            "ping": self._ping,
            "coreshowchannels": self._core_show_channels,
            "devicestatelist": self._device_state_list,
            "extensionstatelist": self._extension_state_list,
            "queuestatus": self._queue_status,
            "originate": self._originate,
            "logoff": self._logoff,
            "listcommands": self._list_commands,
            "command": self._command,
            "modulecheck": self._module_check,
            "showdialplan": self._show_dialplan,
            "getvar": self._getvar,
        }
        self._answered = frozenset(self._handlers)

    # lifecycle

    async def start(self) -> None:
        """Listen; afterwards `port` is the real port."""
        self._server = await asyncio.start_server(
            self._client, self.host, self.port, limit=_LINE_LIMIT, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._booted = time.monotonic()
        log.debug("sim.asterisk_listening", host=self.host, port=self.port)

    async def stop(self) -> None:
        """Stop listening, close every client connection and wait for their handlers."""
        self._close_listener()
        self.drop_connections()
        await self._reap_handlers()

    async def restart(self, *, down_for: float = 0.0, drop: bool = True) -> None:
        """Asterisk restart: stop listening, drop clients and channels, listen on the same port.

        `drop=False` keeps the established sessions (only the listener bounces).
        """
        self._close_listener()
        if drop:
            self.drop_connections()
            self.live_channels.clear()
            self._created.clear()
            self._cel = None
        if down_for > 0:
            await asyncio.sleep(down_for)
        await self.start()

    def drop_connections(self) -> None:
        """Abort every client transport (link drop); the server keeps listening."""
        for session in list(self._sessions):
            session.abort()

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

    def _close_listener(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    async def _reap_handlers(self) -> None:
        tasks = list(self._tasks)
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=_STOP_GRACE)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=_STOP_GRACE)

    # helpers for callers

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    @property
    def url(self) -> str:
        """`ami://user@host:port` (no secret: safe to log)."""
        return f"ami://{self.username}@{self.host}:{self.port}"

    def manager_config(self) -> dict[str, str | int]:
        """Keyword arguments for `panoramisk.Manager` (host, port, username, secret)."""
        return {
            "host": self.host,
            "port": self.port,
            "username": self.username,
            "secret": self.secret,
        }

    @property
    def clients(self) -> int:
        """Clients currently logged in."""
        return sum(1 for session in self._sessions if session.logged_in and session.alive)

    @property
    def connections(self) -> int:
        """Open TCP connections, logged in or not."""
        return sum(1 for session in self._sessions if session.alive)

    def set_answer_pings(self, answer: bool) -> None:
        """False simulates a half-open peer: pings are read and never answered."""
        self.answer_pings = answer

    def actions_named(self, name: str) -> list[dict[str, str]]:
        return [a for a in self.actions if _header(a, "Action").lower() == name.lower()]

    async def wait_until(
        self,
        predicate: Callable[[], bool],
        timeout: float = 5,  # noqa: ASYNC109 - a plain deadline keeps test code short
        what: str = "condition",
    ) -> None:
        """Wait (bounded) until `predicate()` holds; it is re-checked on every state change."""
        try:
            async with asyncio.timeout(timeout):
                while not predicate():
                    changed = self._changed
                    await changed.wait()
        except TimeoutError:
            raise TimeoutError(
                f"FakeAsterisk {self.url}: {what} not reached within {timeout} s "
                f"(connections={self.connections}, logged in={self.clients}, "
                f"actions={[_header(a, 'Action') for a in self.actions]})"
            ) from None

    async def wait_for_login(self, timeout: float = 5, count: int = 1) -> None:  # noqa: ASYNC109
        """Until at least `count` clients are logged in (TimeoutError otherwise)."""
        await self.wait_until(
            lambda: self.clients >= count, timeout, f"{count} logged-in client(s)"
        )

    async def wait_for_action(
        self,
        name: str,
        count: int = 1,
        timeout: float = 5,  # noqa: ASYNC109
    ) -> None:
        """Until `count` actions called `name` have been received."""
        await self.wait_until(
            lambda: len(self.actions_named(name)) >= count, timeout, f"{count} {name} action(s)"
        )

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # playing events

    async def play(
        self,
        messages: Iterable[Mapping[str, str]],
        speed: float | None = None,
        *,
        epoch: float | None = None,
    ) -> None:
        """Send `messages` in order to every logged-in client.

        With `speed`, the `_ts` gaps are waited out divided by `speed`; None
        sends as fast as the clients read.  `Timestamp` headers (when
        `timestamp_events`) are `epoch + _ts` — by default the play start's
        wall clock stands for the first `_ts` — so durations stay true at any
        speed; messages without `_ts` are stamped with the current time.
        """
        loop = asyncio.get_running_loop()
        started, first = loop.time(), None
        wall = time.time()
        for message in messages:
            offset = _seconds(message.get("_ts"))
            if offset is not None:
                first = offset if first is None else first
                if speed:
                    await _sleep_until(loop, started + (offset - first) / speed)
            moment = _stamp(offset, first, epoch, wall)
            await self._broadcast(message, moment if self.timestamp_events else None, moment)

    def happen_offline(
        self, messages: Iterable[Mapping[str, str]], *, epoch: float | None = None
    ) -> None:
        """Calls that happen while nobody listens (the tracker is down): Asterisk's
        channel table, phone states and CEL file follow them, no client hears a thing.

        Times as `play` stamps them: `epoch + _ts`, or from now for the first `_ts`.
        """
        wall, first = time.time(), None
        for message in messages:
            offset = _seconds(message.get("_ts"))
            if offset is not None and first is None:
                first = offset
            self._happen(message, _stamp(offset, first, epoch, wall))

    async def send_raw(self, data: bytes) -> None:
        """Arbitrary bytes to every logged-in client (fault injection)."""
        for session in self._logged_in():
            await session.send(data, self.chunk_size, self.write_timeout)

    async def send_event(self, **fields: str) -> None:
        """One event built from keyword arguments (`Event` first if given)."""
        await self._broadcast(fields, time.time() if self.timestamp_events else None)

    async def set_device_state(self, device: str, state: str) -> None:
        """A phone changes state (``NOT_INUSE``, ``INUSE``, ``UNAVAILABLE``...): events sent."""
        for fields in self.states.change_device(device, state):
            await self.send_event(**dict(fields))

    async def set_paused(self, interface: str, paused: bool, reason: str = "") -> None:
        """A queue member pauses or comes back in every queue: `QueueMemberPause` sent."""
        for fields in self.states.pause(interface, paused, reason):
            await self.send_event(**dict(fields))

    async def _broadcast(
        self, message: Mapping[str, str], stamp: float | None, moment: float | None = None
    ) -> None:
        self._happen(message, time.time() if moment is None else moment)
        data = encode_message(message, stamp)
        for session in self._logged_in():
            if session.wants(message):
                await session.send(data, self.chunk_size, self.write_timeout)

    def _happen(self, message: Mapping[str, str], moment: float) -> None:
        """What Asterisk keeps of a message: its channel table, phone states, CEL log."""
        self._track(message)
        self.states.observe(message)
        if self.cel_file is None or not self.setup.cel_enabled:
            return
        if self._cel is None:
            self._cel = CelRecorder(self.setup.cel_apps)
        CelFile(self.cel_file).append(record.line() for record in self._cel.feed(message, moment))

    def _logged_in(self) -> list[_Session]:
        return [s for s in self._sessions if s.logged_in and s.alive]

    def _track(self, message: Mapping[str, str]) -> None:
        """Keep `live_channels` as Asterisk's channel table would be."""
        uniqueid = message.get("Uniqueid", "")
        event = message.get("Event", "")
        if not uniqueid:
            return
        if event == "Newchannel":
            snapshot = {key: message.get(key, "") for key in SNAPSHOT_KEYS}
            snapshot.update(Application="", ApplicationData="", BridgeId="")
            self.live_channels[uniqueid] = snapshot
            self._created[uniqueid] = time.monotonic()
        elif event == "Hangup":
            self.live_channels.pop(uniqueid, None)
            self._created.pop(uniqueid, None)
        elif uniqueid in self.live_channels:
            _update_snapshot(self.live_channels[uniqueid], event, message)

    # serving one client

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        session = _Session(reader, writer)
        self._sessions.add(session)
        self._notify()
        try:
            await session.send(BANNER, self.chunk_size, self.write_timeout)
            await self._serve(session)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:  # stop(): end quietly, the transport is closed below
            pass
        except Exception:
            log.exception("sim.asterisk_client_failed")
        finally:
            writer.close()
            self._sessions.discard(session)
            if task is not None:
                self._tasks.discard(task)
            self._notify()

    async def _serve(self, session: _Session) -> None:
        while session.alive:
            action = await session.read_action()
            if action is None:
                return
            self.actions.append(action)
            self._notify()
            if not await self._dispatch(session, action):
                return

    async def _dispatch(self, session: _Session, action: dict[str, str]) -> bool:
        """Answer one action; False closes the connection."""
        name = _header(action, "Action").lower()
        if not name:
            await self._reply(session, action, "Error", [("Message", "Missing action in request")])
            return True
        allowed = session.logged_in or name in ("login", "challenge")
        if not (allowed and self.setup.may_run(name)):
            await self._reply(session, action, "Error", [("Message", "Permission denied")])
            return True
        handler = self._handlers.get(name, self._unknown)
        return await handler(session, action)

    async def _reply(
        self, session: _Session, action: Mapping[str, str], response: str, rest: Fields
    ) -> None:
        fields = [("Response", response), *_with_action_id(action), *rest]
        await session.send(_frame(fields), self.chunk_size, self.write_timeout)

    async def _login(self, session: _Session, action: dict[str, str]) -> bool:
        if not self._credentials_ok(session, action):
            await self._reply(session, action, "Error", [("Message", "Authentication failed")])
            return False
        session.classes = _event_classes(_header(action, "Events"))
        await self._reply(session, action, "Success", [("Message", "Authentication accepted")])
        uptime = str(int(time.monotonic() - self._booted))
        booted = {"Event": "FullyBooted", "Privilege": "system,all", "Uptime": uptime}
        booted.update(LastReload=uptime, Status="Fully Booted")
        if session.wants(booted):
            await session.send(encode_message(booted), self.chunk_size, self.write_timeout)
        # events flow only from here on, so none can slip in before FullyBooted
        session.logged_in = True
        self.logins += 1
        self._notify()
        return True

    def _credentials_ok(self, session: _Session, action: Mapping[str, str]) -> bool:
        if _header(action, "Username") != self.username:
            return False
        if _header(action, "AuthType").lower() == "md5":
            if not session.challenge:
                return False
            expected = hashlib.md5((session.challenge + self.secret).encode()).hexdigest()
            return hmac.compare_digest(_header(action, "Key").lower(), expected)
        return hmac.compare_digest(_header(action, "Secret"), self.secret)

    async def _challenge(self, session: _Session, action: dict[str, str]) -> bool:
        if _header(action, "AuthType").lower() != "md5":
            await self._reply(session, action, "Error", [("Message", "Must specify AuthType")])
            return True
        session.challenge = str(secrets.randbelow(10**9))
        await self._reply(session, action, "Success", [("Challenge", session.challenge)])
        return True

    async def _ping(self, session: _Session, action: dict[str, str]) -> bool:
        if self.answer_pings:
            pong = [("Ping", "Pong"), ("Timestamp", f"{time.time():.6f}")]
            await self._reply(session, action, "Success", pong)
        return True

    async def _core_show_channels(self, session: _Session, action: dict[str, str]) -> bool:
        action_id = _with_action_id(action)
        start = [("EventList", "start"), ("Message", "Channels will follow")]
        parts = [_frame([("Response", "Success"), *action_id, *start])]
        now = time.monotonic()
        for uniqueid, snapshot in self.live_channels.items():
            duration = _duration(now - self._created.get(uniqueid, now))
            parts.append(_frame(_core_show_channel(snapshot, action_id, duration)))
        complete = [("EventList", "Complete"), ("ListItems", str(len(self.live_channels)))]
        parts.append(_frame([("Event", "CoreShowChannelsComplete"), *action_id, *complete]))
        await session.send(b"".join(parts), self.chunk_size, self.write_timeout)
        return True

    async def _device_state_list(self, session: _Session, action: dict[str, str]) -> bool:
        items = self.states.device_list()
        await self._event_list(session, action, "Device State Changes", items, "DeviceStateList")
        return True

    async def _extension_state_list(self, session: _Session, action: dict[str, str]) -> bool:
        items = self.states.extension_list()
        await self._event_list(session, action, "Extension Statuses", items, "ExtensionStateList")
        return True

    async def _queue_status(self, session: _Session, action: dict[str, str]) -> bool:
        items = self.states.member_list()
        await self._event_list(session, action, "Queue status", items, "QueueStatus")
        return True

    async def _event_list(
        self, session: _Session, action: dict[str, str], what: str, items: list[Fields], name: str
    ) -> None:
        """An EventList answer: the start response, the items, `<name>Complete`."""
        action_id = _with_action_id(action)
        start = [("EventList", "start"), ("Message", f"{what} will follow")]
        parts = [_frame([("Response", "Success"), *action_id, *start])]
        parts += [_frame([item[0], *action_id, *item[1:]]) for item in items]
        complete = [("EventList", "Complete"), ("ListItems", str(len(items)))]
        parts.append(_frame([("Event", f"{name}Complete"), *action_id, *complete]))
        await session.send(b"".join(parts), self.chunk_size, self.write_timeout)

    async def _originate(self, session: _Session, action: dict[str, str]) -> bool:
        """Ring the manager's phone, then run the callback (see `sim.originate`).

        An invalid request is answered `Response: Error` at once.  `Async: true`
        is answered "queued" at once and the outcome comes as `OriginateResponse`;
        otherwise the answer waits for the outcome (Success, or Error "Originate
        failed") and no `OriginateResponse` is sent, as Asterisk does.
        """
        request = OriginateRequest.parse(action)
        problem = originate_error(request)
        if problem is not None:
            await self._reply(session, action, "Error", [("Message", problem)])
            return True
        call = self._originated_call(request)
        if request.is_async:
            await self._reply(session, action, "Success", [("Message", QUEUED)])
            self._run_in_background(self._play_originated(call, synchronous=False))
            return True
        await self._play_originated(call, synchronous=True)
        if call.response.get("Response") == "Success":
            await self._reply(session, action, "Success", [("Message", QUEUED)])
        else:
            await self._reply(session, action, "Error", [("Message", "Originate failed")])
        self._run_in_background(self.play(call.after, self.originate_speed, epoch=call.start))
        return True

    def _originated_call(self, request: OriginateRequest) -> OriginatedCall:
        outcomes = self.originate_outcomes
        manager = outcomes.get(request.channel) or outcomes.get(request.device, "answer")
        call = callback_call(
            request,
            ids=self._originate_ids,
            start=self.clock(),
            manager=manager,
            customer=outcomes.get(request.exten, "answer"),
        )
        self.originated.append(call)
        return call

    async def _play_originated(self, call: OriginatedCall, *, synchronous: bool) -> None:
        """The ringing, `originate_delay`, the outcome; the rest too unless `synchronous`."""
        await self.play(call.ringing, epoch=call.start)
        await self._ring_for(self.originate_delay)
        outcome = call.outcome[:-1] if synchronous else call.outcome
        await self.play(outcome, self.originate_speed, epoch=call.start)
        if not synchronous:
            await self.play(call.after, self.originate_speed, epoch=call.start)

    async def _ring_for(self, seconds: float) -> None:
        """Wait `seconds`, less if the server stops meanwhile (`stop()` waits for us)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        # polled: stop() sets no event (it only drops `_server`)
        while self._server is not None and (left := deadline - loop.time()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(min(left, _ORIGINATE_POLL))

    def _run_in_background(self, work: Awaitable[None]) -> None:
        """Run `work` as a task that `stop()` waits for (and cancels after a grace)."""

        async def run() -> None:
            try:
                await work
            except Exception:
                log.exception("sim.asterisk_originate_failed")

        task = asyncio.create_task(run(), name="fake-asterisk-originate")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _logoff(self, session: _Session, action: dict[str, str]) -> bool:
        await self._reply(session, action, "Goodbye", [("Message", "Thanks for all the fish.")])
        return False

    async def _list_commands(self, session: _Session, action: dict[str, str]) -> bool:
        missing = self._answered - self._handlers.keys()
        await self._reply(session, action, "Success", self.setup.list_commands(missing))
        return True

    async def _command(self, session: _Session, action: dict[str, str]) -> bool:
        ok, lines = self.setup.command(_header(action, "Command"))
        output = [("Message", "Command output follows")] + [("Output", line) for line in lines]
        await self._reply(session, action, "Success" if ok else "Error", output)
        return True

    async def _module_check(self, session: _Session, action: dict[str, str]) -> bool:
        if self.setup.module_loaded(_header(action, "Module")):
            await self._reply(session, action, "Success", [("Version", "")])
        else:
            await self._reply(session, action, "Error", [("Message", "Module not loaded")])
        return True

    async def _show_dialplan(self, session: _Session, action: dict[str, str]) -> bool:
        context = _header(action, "Context")
        contexts = [context] if context else sorted(self.setup.contexts)
        if context and self.setup.dialplan(context) is None:
            failure = [("Message", f"Did not find context {context}")]
            await self._reply(session, action, "Error", failure)
            return True
        items = [
            [("Event", "ListDialplan"), *item]
            for name in contexts
            for item in self.setup.dialplan(name) or []
        ]
        await self._event_list(session, action, "DialPlan list", items, "ShowDialPlan")
        return True

    async def _getvar(self, session: _Session, action: dict[str, str]) -> bool:
        variable = _header(action, "Variable")
        if not variable:
            await self._reply(session, action, "Error", [("Message", "No variable specified")])
            return True
        value = self.setup.getvar(variable, self.states.devices)
        await self._reply(session, action, "Success", [("Variable", variable), ("Value", value)])
        return True

    async def _unknown(self, session: _Session, action: dict[str, str]) -> bool:
        await self._reply(session, action, "Error", [("Message", "Invalid/unknown command")])
        return True


def _core_show_channel(snapshot: Mapping[str, str], action_id: Fields, duration: str) -> Fields:
    fields: Fields = [("Event", "CoreShowChannel"), *action_id]
    fields.extend((key, snapshot.get(key, "")) for key in SNAPSHOT_KEYS)
    fields.append(("Application", snapshot.get("Application", "")))
    fields.append(("ApplicationData", snapshot.get("ApplicationData", "")))
    fields.append(("Duration", duration))
    fields.append(("BridgeId", snapshot.get("BridgeId", "")))
    return fields


def _update_snapshot(snapshot: dict[str, str], event: str, message: Mapping[str, str]) -> None:
    for key in SNAPSHOT_KEYS:
        if key in message:
            snapshot[key] = message[key]
    if event == "Newexten":
        snapshot["Application"] = message.get("Application", "")
        snapshot["ApplicationData"] = message.get("AppData", "")
    elif event == "BridgeEnter":
        snapshot["BridgeId"] = message.get("BridgeUniqueid", "")
    elif event == "BridgeLeave":
        snapshot["BridgeId"] = ""


def _seconds(value: str | None) -> float | None:
    if value is None:
        return None
    with contextlib.suppress(ValueError):
        return float(value)
    return None


def _stamp(offset: float | None, first: float | None, epoch: float | None, wall: float) -> float:
    if offset is None:
        return time.time()
    if epoch is not None:
        return epoch + offset
    return wall + offset - (first or 0.0)


async def _sleep_until(loop: asyncio.AbstractEventLoop, deadline: float) -> None:
    delay = deadline - loop.time()
    if delay > 0:
        await asyncio.sleep(delay)
