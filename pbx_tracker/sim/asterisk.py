"""FakeAsterisk: a real AMI server on loopback for tests, benchmarks and the demo.

It speaks the protocol exactly as Asterisk does on the wire (`sim.wire`; the
listener, logins and faults are `sim.ami_server`'s).  It answers the actions
the tracker uses (Login, Challenge, Ping, CoreShowChannels, DeviceStateList,
ExtensionStateList, QueueStatus, Originate, Logoff, and for the check of the
config ListCommands, Command, ModuleCheck, ShowDialPlan and Getvar) and plays
recorded or generated event streams to every logged-in client, optionally at a
given speed and cut into tiny TCP writes.  Phones change state with
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
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path

import structlog

from pbx_tracker.sim.ami_server import AmiServer
from pbx_tracker.sim.ami_session import AmiSession
from pbx_tracker.sim.cel_log import CelFile
from pbx_tracker.sim.cel_recorder import CelRecorder
from pbx_tracker.sim.channels import ChannelTable
from pbx_tracker.sim.ids import OriginateIds
from pbx_tracker.sim.introspection import PbxSetup
from pbx_tracker.sim.originate import OriginatedCall, callback_call
from pbx_tracker.sim.originate_request import QUEUED, OriginateRequest, originate_error
from pbx_tracker.sim.states import PbxStates
from pbx_tracker.sim.wire import encode_message, header

log = structlog.get_logger(__name__)

_ORIGINATE_POLL = 0.05


class FakeAsterisk(AmiServer):
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
        super().__init__(
            host=host,
            port=port,
            username=username,
            secret=secret,
            chunk_size=chunk_size,
            answer_pings=answer_pings,
            write_timeout=write_timeout,
        )
        self.timestamp_events = timestamp_events
        # Asterisk's CEL log (cel_custom's Master.csv); None: no CEL written
        self.cel_file = None if cel_file is None else Path(cel_file)
        self._cel: CelRecorder | None = None
        self._channels = ChannelTable()
        self.states = PbxStates()
        self.setup = PbxSetup()
        # Originate: outcome by device ("IAX2/101") or customer number; "answer" if absent
        self.originate_outcomes: dict[str, str] = {}
        self.originate_delay = 0.01  # seconds the manager's phone rings before the outcome
        self.originate_speed: float | None = None  # the rest of the call: None plays it at once
        self.clock: Callable[[], float] = time.time  # when an originated call starts (epoch s)
        self.originated: list[OriginatedCall] = []
        self._originate_ids = OriginateIds()
        self._handlers.update(
            coreshowchannels=self._core_show_channels,
            devicestatelist=self._device_state_list,
            extensionstatelist=self._extension_state_list,
            queuestatus=self._queue_status,
            originate=self._originate,
            listcommands=self._list_commands,
            command=self._command,
            modulecheck=self._module_check,
            showdialplan=self._show_dialplan,
            getvar=self._getvar,
        )
        self._answered = frozenset(self._handlers)

    @property
    def live_channels(self) -> dict[str, dict[str, str]]:
        """Asterisk's channel table: a snapshot of every live channel by Uniqueid."""
        return self._channels.live

    async def restart(self, *, down_for: float = 0.0, drop: bool = True) -> None:
        """Asterisk restart: stop listening, drop clients and channels, listen on the same port.

        `drop=False` keeps the established sessions (only the listener bounces).
        """
        if drop:
            self._channels.clear()
            self._cel = None
        await super().restart(down_for=down_for, drop=drop)

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
        self._channels.track(message)
        self.states.observe(message)
        if self.cel_file is None or not self.setup.cel_enabled:
            return
        if self._cel is None:
            self._cel = CelRecorder(self.setup.cel_apps)
        CelFile(self.cel_file).append(record.line() for record in self._cel.feed(message, moment))

    # the PBX's actions

    def _may_run(self, name: str) -> bool:
        return self.setup.may_run(name)

    async def _core_show_channels(self, session: AmiSession, action: dict[str, str]) -> bool:
        items = self._channels.listing()
        await self._event_list(session, action, "Channels", items, "CoreShowChannels")
        return True

    async def _device_state_list(self, session: AmiSession, action: dict[str, str]) -> bool:
        items = self.states.device_list()
        await self._event_list(session, action, "Device State Changes", items, "DeviceStateList")
        return True

    async def _extension_state_list(self, session: AmiSession, action: dict[str, str]) -> bool:
        items = self.states.extension_list()
        await self._event_list(session, action, "Extension Statuses", items, "ExtensionStateList")
        return True

    async def _queue_status(self, session: AmiSession, action: dict[str, str]) -> bool:
        items = self.states.member_list()
        await self._event_list(session, action, "Queue status", items, "QueueStatus")
        return True

    async def _list_commands(self, session: AmiSession, action: dict[str, str]) -> bool:
        missing = self._answered - self._handlers.keys()
        await self._reply(session, action, "Success", self.setup.list_commands(missing))
        return True

    async def _command(self, session: AmiSession, action: dict[str, str]) -> bool:
        ok, lines = self.setup.command(header(action, "Command"))
        output = [("Message", "Command output follows")] + [("Output", line) for line in lines]
        await self._reply(session, action, "Success" if ok else "Error", output)
        return True

    async def _module_check(self, session: AmiSession, action: dict[str, str]) -> bool:
        if self.setup.module_loaded(header(action, "Module")):
            await self._reply(session, action, "Success", [("Version", "")])
        else:
            await self._reply(session, action, "Error", [("Message", "Module not loaded")])
        return True

    async def _show_dialplan(self, session: AmiSession, action: dict[str, str]) -> bool:
        context = header(action, "Context")
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

    async def _getvar(self, session: AmiSession, action: dict[str, str]) -> bool:
        variable = header(action, "Variable")
        if not variable:
            await self._reply(session, action, "Error", [("Message", "No variable specified")])
            return True
        value = self.setup.getvar(variable, self.states.devices)
        await self._reply(session, action, "Success", [("Variable", variable), ("Value", value)])
        return True

    # Originate: a click-to-call callback

    async def _originate(self, session: AmiSession, action: dict[str, str]) -> bool:
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
