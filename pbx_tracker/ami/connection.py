"""AmiListener: a long-lived AMI session on top of panoramisk 1.4's protocol classes.

Why not `panoramisk.Manager`: its `connect()` / `connection_made()` send the
Login themselves, start a fire-and-forget pinger and, on a refused connect or
a lost connection, schedule `call_later(reconnect_timeout, connect)` with a
fixed integer delay and no handle to cancel it.  Neutralising that means
overriding `connect`, `connection_made`, `login`, `ping`, `connection_lost` and
`close` - all of its machinery - and what would remain (fnmatch dispatch,
re-sending "awaiting actions" after `FullyBooted`) is what we do not want.  So
we keep panoramisk's `AMIProtocol` (subclassed in `protocol.py`), `Message` and
`Action`, and drive the transport here: `loop.create_connection` inside the
running loop, Login awaited and checked, one resync, a Ping watchdog, and a
single reconnect loop with capped exponential backoff.  panoramisk's
`factory.dispatch` hook is our one synchronous catch-all callback.

Ordering guarantee of `events` (one connection after another, never two at
once): messages are queued synchronously in the order their bytes arrive.
After each successful Login the listener sends `CoreShowChannels`; every event
parsed before the `CoreShowChannelsComplete` message (including those between
the Login response and the resync answer) is queued before the `Resync`, and
every event parsed after it is queued after - the `Resync` is queued by the
same `data_received` call that parses `CoreShowChannelsComplete`.  Events of a
previous connection always precede the `Resync` of the next one.  Responses to
our own actions (and the `CoreShowChannel` events of the resync) carry our
ActionID and never reach the queue.  If Asterisk answers `CoreShowChannels`
with an error (missing read permission) no `Resync` is queued and
"ami.resync_failed" is logged.

Then the states routing needs are asked for the same way, each list queued as
one `StateList` when its last message is parsed: devices (`DeviceStateList`),
hints (`ExtensionStateList`) and queue members (`QueueStatus`).  An Asterisk
that refuses one of them (older version, missing permission) only costs that
list: "ami.state_list_failed" is logged and the rest goes on.

The items it queues are in `listener_items`; what it reads to log in, and the
redaction of the secret from panoramisk's logs, in `credentials`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import time
from collections.abc import Callable, Mapping

import structlog
from panoramisk.message import Message

from pbx_tracker.ami.credentials import AmiConnectionSettings, AmiLoginError, protect_secret
from pbx_tracker.ami.listener_items import STATE_LISTS, ListenerItem, Resync, StateList
from pbx_tracker.ami.protocol import AmiAction, AmiProtocol
from pbx_tracker.calls.events import AmiEvent

__all__ = [
    "AmiConnectionSettings",
    "AmiListener",
    "AmiLoginError",
    "ListenerItem",
    "Resync",
    "StateList",
]

log = structlog.get_logger(__name__)

RESYNC_TIMEOUT = 30.0
LOGOFF_TIMEOUT = 2.0
_JITTER = 0.1


class AmiListener:
    """Connects, logs in, resyncs, watches pings and reconnects until `close()`.

    `events` receives an `AmiEvent` per AMI event and a `Resync` after every
    login, in arrival order (see the module docstring).
    """

    def __init__(
        self,
        settings: AmiConnectionSettings,
        *,
        clock: Callable[[], float] = time.time,
        on_status: Callable[[str, bool], None] | None = None,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._on_status = on_status
        self.events: asyncio.Queue[ListenerItem] = asyncio.Queue()
        self.connected = False
        self.events_received = 0
        self.connect_attempts = 0
        self.logins = 0
        self.reconnects = 0
        self.malformed_messages = 0
        self.dropped_messages = 0
        self._protocol: AmiProtocol | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        protect_secret(settings.secret.get_secret_value())

    def __repr__(self) -> str:
        s = self._settings
        return f"<AmiListener {s.username}@{s.host}:{s.port} connected={self.connected}>"

    @property
    def queue_depth(self) -> int:
        return self.events.qsize()

    # -- public API --------------------------------------------------------

    async def run(self) -> None:
        """Run until `close()`; raises `AmiLoginError` if Asterisk rejects the login."""
        if self._closed:
            return
        if self._task is not None:
            raise RuntimeError("AmiListener.run() is already running")
        self._task = asyncio.create_task(self._reconnect_forever(), name="ami-listener")
        try:
            await self._task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if self._closed and current is not None and current.cancelling() == 0:
                return
            raise

    async def send_action(
        self,
        action: Mapping[str, str],
        *,
        timeout: float = 5.0,  # noqa: ASYNC109 - the public API takes a plain deadline
    ) -> list[AmiEvent]:
        """Every message of the response: one, or the whole EventList.

        Raises `ConnectionError` when not logged in (or the connection drops
        before the answer) and `TimeoutError` when no answer comes in time.
        An `Error` response is returned, not raised.
        """
        protocol = self._protocol
        if protocol is None or not self.connected:
            s = self._settings
            raise ConnectionError(f"AMI not connected to {s.host}:{s.port}")
        messages = await self._request(protocol, action, timeout)
        return [self._event(message) for message in messages]

    async def close(self) -> None:
        """Logoff if connected, stop the reconnect loop, close the transport. Idempotent."""
        if self._closed:
            return
        self._closed = True
        protocol = self._protocol
        if protocol is not None and self.connected:
            with contextlib.suppress(OSError, TimeoutError):
                await self._request(protocol, {"Action": "Logoff"}, LOGOFF_TIMEOUT)
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task})
        if self._protocol is not None:
            self._protocol.close()
            self._protocol = None

    # -- reconnect loop ----------------------------------------------------

    async def _reconnect_forever(self) -> None:
        failures = 0
        while not self._closed:
            self.connect_attempts += 1
            try:
                await self._session()
                failures = 0
            except (OSError, TimeoutError) as error:
                self._connect_failed(_describe(error))
            if self._closed:
                return
            delay = self._backoff(failures)
            failures += 1
            log.info("ami.reconnecting", delay=round(delay, 3), attempt=self.connect_attempts + 1)
            await asyncio.sleep(delay)

    def _backoff(self, failures: int) -> float:
        s = self._settings
        delay = min(s.reconnect_max, s.reconnect_initial * 2.0 ** min(failures, 32))
        return delay * random.uniform(1 - _JITTER, 1 + _JITTER)

    def _connect_failed(self, reason: str) -> None:
        s = self._settings
        log.warning(
            "ami.connect_failed",
            host=s.host,
            port=s.port,
            reason=reason,
            attempt=self.connect_attempts,
        )
        self._status(f"disconnected: {reason}", False)

    async def _session(self) -> None:
        protocol = await self._connect()
        self._protocol = protocol
        reason = "closed"
        try:
            await self._login(protocol)
            self._logged_in()
            reason = await self._serve(protocol)
        finally:
            if not protocol.closed:
                protocol.abort(reason)
            self._protocol = None
            if self.connected:
                self.connected = False
                self._disconnected(reason)

    async def _connect(self) -> AmiProtocol:
        s = self._settings
        loop = asyncio.get_running_loop()
        connecting = loop.create_connection(self._make_protocol, s.host, s.port)
        try:
            _, protocol = await asyncio.wait_for(connecting, s.connect_timeout)
        except TimeoutError:
            raise TimeoutError(f"connect timed out after {s.connect_timeout:g} s") from None
        return protocol

    def _make_protocol(self) -> AmiProtocol:
        return AmiProtocol(
            self._on_message,
            on_event=self._on_fields,
            on_dropped=self._count_dropped,
            on_malformed=self._count_malformed,
        )

    async def _login(self, protocol: AmiProtocol) -> None:
        s = self._settings
        fields = {
            "Action": "Login",
            "Username": s.username,
            "Secret": s.secret.get_secret_value(),
            "Events": s.events if isinstance(s.events, str) else ",".join(s.events),
        }
        response = (await self._request(protocol, fields, s.connect_timeout))[0]
        if response.get("Response") != "Success":
            reason = str(response.get("Message", ""))
            log.error(
                "ami.login_rejected", host=s.host, port=s.port, user=s.username, reason=reason
            )
            raise AmiLoginError(s.username, s.host, s.port)

    def _logged_in(self) -> None:
        s = self._settings
        self.connected = True
        self.logins += 1
        if self.logins > 1:
            self.reconnects += 1
        log.info("ami.connected", host=s.host, port=s.port, user=s.username, logins=self.logins)
        self._status("connected", True)

    def _disconnected(self, reason: str) -> None:
        s = self._settings
        if self._closed:
            log.info("ami.closed", host=s.host, port=s.port)
        else:
            log.warning("ami.disconnected", host=s.host, port=s.port, reason=reason)
        self._status(f"disconnected: {reason}", False)

    def _status(self, text: str, connected: bool) -> None:
        if self._on_status is None:
            return
        try:
            self._on_status(text, connected)
        except Exception:
            log.exception("ami.status_callback_failed")

    # -- a logged-in session -----------------------------------------------

    async def _serve(self, protocol: AmiProtocol) -> str:
        """Resync, then watch pings; returns why the connection ended."""
        try:
            await self._resync(protocol)
            await self._refresh_states(protocol)
            return await self._watch(protocol)
        except (OSError, TimeoutError) as error:
            return protocol.lost.result() if protocol.lost.done() else _describe(error)

    async def _resync(self, protocol: AmiProtocol) -> None:
        messages = await self._request(
            protocol, {"Action": "CoreShowChannels"}, RESYNC_TIMEOUT, self._queue_resync
        )
        if messages[0].get("Response") == "Success":
            log.info("ami.resynced", channels=len(messages) - 2)

    def _queue_resync(self, messages: list[Message]) -> None:
        """Runs inside data_received when CoreShowChannelsComplete is parsed."""
        if messages[0].get("Response") != "Success":
            log.error("ami.resync_failed", reason=str(messages[0].get("Message", "")))
            return
        channels = [
            self._event(message)
            for message in messages
            if message.get("Event") == "CoreShowChannel"
        ]
        self.events.put_nowait(Resync(channels, self._event(messages[-1]).time))

    async def _refresh_states(self, protocol: AmiProtocol) -> None:
        for action, item_event, kind in STATE_LISTS:
            queue = functools.partial(self._queue_state_list, action, item_event, kind)
            await self._request(protocol, {"Action": action}, RESYNC_TIMEOUT, queue)

    def _queue_state_list(
        self, action: str, item_event: str, kind: str, messages: list[Message]
    ) -> None:
        """Runs inside data_received when the list's last message is parsed."""
        if messages[0].get("Response") != "Success":
            reason = str(messages[0].get("Message", ""))
            log.warning("ami.state_list_failed", action=action, reason=reason)
            return
        items = [self._event(m) for m in messages if m.get("Event") == item_event]
        self.events.put_nowait(StateList(kind, items, self._event(messages[-1]).time))

    async def _watch(self, protocol: AmiProtocol) -> str:
        s = self._settings
        while True:
            done, _ = await asyncio.wait({protocol.lost}, timeout=s.ping_interval)
            if done:
                return protocol.lost.result()
            protocol.prune()
            try:
                await self._request(protocol, {"Action": "Ping"}, s.ping_timeout)
            except TimeoutError:
                reason = f"no answer to Ping within {s.ping_timeout:g} s"
                log.warning("ami.ping_timeout", host=s.host, port=s.port, reason=reason)
                protocol.abort(reason)
                return reason

    async def _request(
        self,
        protocol: AmiProtocol,
        fields: Mapping[str, str],
        wait: float,
        on_complete: Callable[[list[Message]], None] | None = None,
    ) -> list[Message]:
        action = AmiAction(fields, on_complete)
        future = protocol.send(action, as_list=None)
        try:
            result = await asyncio.wait_for(future, wait)
        except TimeoutError:
            protocol.forget(action)
            raise TimeoutError(
                f"AMI action {action.name} got no answer within {wait:g} s"
            ) from None
        return result if isinstance(result, list) else [result]

    # -- incoming events ---------------------------------------------------

    def _on_message(self, message: Message) -> None:
        """panoramisk's catch-all dispatch: never raises, only queues."""
        try:
            event = self._event(message)
        except Exception:
            self.malformed_messages += 1
            log.exception("ami.event_failed")
            return
        self.events_received += 1
        self.events.put_nowait(event)

    def _on_fields(self, fields: dict[str, str]) -> None:
        """The protocol's fast path for plain events: never raises, only queues."""
        self.events_received += 1
        self.events.put_nowait(self._stamped(fields))

    def _event(self, message: Message) -> AmiEvent:
        # panoramisk stores the body of `Response: Follows` under the key "content"
        # (and "" for every other message): keep it only when there is a body.
        # `_store` holds (original key, value) pairs; iterating it directly is ~3x
        # cheaper than the MutableMapping `items()` of its CaseInsensitiveDict.
        fields = {
            key: value if isinstance(value, str) else "\n".join(value)
            for key, value in message._store.values()
            if key != "content" or value
        }
        return self._stamped(fields)

    def _stamped(self, fields: dict[str, str]) -> AmiEvent:
        try:
            moment = float(fields["Timestamp"])
        except (KeyError, ValueError):
            moment = self._clock()
        return AmiEvent(fields, moment)

    def _count_dropped(self, size: int) -> None:
        self.dropped_messages += 1

    def _count_malformed(self) -> None:
        self.malformed_messages += 1


def _describe(error: BaseException) -> str:
    return str(error) or type(error).__name__
