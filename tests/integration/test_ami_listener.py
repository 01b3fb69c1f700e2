"""AmiListener against a real AMI server on loopback (FakeAsterisk), bounded in time."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import structlog
from ami_settings import ListenerSettings
from pydantic import SecretStr
from waiting import until

from pbx_tracker.ami.capture import read_capture
from pbx_tracker.ami.connection import AmiListener, AmiLoginError, Resync, StateList
from pbx_tracker.ami.protocol import AmiAction, AmiProtocol
from pbx_tracker.calls.events import AmiEvent
from pbx_tracker.sim.asterisk import FakeAsterisk

TRACES = Path(__file__).resolve().parents[1] / "data" / "asterisk-traces"
USER = "tracker"
SECRET = "Zq-very-secret-9f3"
WAIT = 5.0
MIB = 1024 * 1024
SECRET_VALUE = SecretStr(SECRET)


Settings = functools.partial(ListenerSettings, SECRET_VALUE)


class Statuses:
    """on_status recorder that lets a test wait for the n-th status line."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, bool]] = []
        self._changed = asyncio.Event()

    def __call__(self, text: str, connected: bool) -> None:
        self.lines.append((text, connected))
        self._changed.set()

    async def wait(self, predicate: Callable[[list[tuple[str, bool]]], bool]) -> None:
        await until(lambda: predicate(self.lines), self._changed, WAIT)

    def count(self, connected: bool) -> int:
        return sum(1 for _, up in self.lines if up is connected)


def trace_events(name: str, limit: int | None = None) -> list[dict[str, str]]:
    events = [dict(e.fields) for e in read_capture(TRACES / name) if "Event" in e.fields]
    return events[:limit]


def raw(*lines: str | bytes) -> bytes:
    parts = [line.encode() if isinstance(line, str) else line for line in lines]
    return b"".join(part + b"\r\n" for part in parts) + b"\r\n"


async def next_item(listener: AmiListener) -> AmiEvent | Resync:
    """The next event or Resync (the state lists after a login are skipped)."""
    while isinstance(item := await asyncio.wait_for(listener.events.get(), WAIT), StateList):
        pass
    return item


async def next_resync(listener: AmiListener) -> Resync:
    while not isinstance(item := await next_item(listener), Resync):
        pass
    return item


async def login_answered(listener: AmiListener) -> None:
    """Until the resync after login has had its last list (queue members): from then on the
    listener sends nothing of its own."""
    await next_resync(listener)
    while not isinstance(item := await listener.events.get(), StateList) or (
        item.kind != "queue_members"
    ):
        pass


async def next_named(listener: AmiListener, name: str) -> AmiEvent:
    while True:
        item = await next_item(listener)
        if isinstance(item, AmiEvent) and item.name == name:
            return item


async def collect(listener: AmiListener, count: int) -> list[AmiEvent]:
    items: list[AmiEvent] = []
    while len(items) < count:
        item = await next_item(listener)
        assert isinstance(item, AmiEvent), f"unexpected {item!r} after {len(items)} events"
        items.append(item)
    return items


def assert_same_events(got: Iterable[AmiEvent], expected: Iterable[dict[str, str]]) -> None:
    got, expected = list(got), list(expected)
    assert [e.name for e in got] == [e["Event"] for e in expected]
    for event, fields in zip(got, expected, strict=True):
        assert event.fields.items() >= fields.items(), fields["Event"]


@contextlib.asynccontextmanager
async def running(listener: AmiListener) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(listener.run())
    try:
        yield task
    finally:
        await asyncio.wait_for(listener.close(), WAIT)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, WAIT)


@pytest.fixture
async def asterisk() -> AsyncIterator[FakeAsterisk]:
    async with FakeAsterisk(username=USER, secret=SECRET) as server:
        yield server


def listener_for(server: FakeAsterisk, **changes: Any) -> AmiListener:
    on_status = changes.pop("on_status", None)
    clock = changes.pop("clock", time.time)
    settings = replace(Settings(port=server.port), **changes)
    return AmiListener(settings, clock=clock, on_status=on_status)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- events --------------------------------------------------------------------


async def test_trace_events_arrive_in_order_and_complete(asterisk: FakeAsterisk) -> None:
    """A captured ring-group call played by Asterisk arrives event by event in order, every field a
    string, stamped with the listener's clock, with nothing counted malformed."""
    listener = listener_for(asterisk, clock=lambda: 1234.5)
    expected = trace_events("06_ringgroup.jsonl")
    async with running(listener):
        first = await next_resync(listener)
        assert first.channels == []
        await asterisk.play(expected)
        got = await collect(listener, len(expected))
    assert_same_events(got, expected)
    assert all(type(value) is str for e in got for value in e.fields.values())
    assert {e.time for e in got} == {1234.5}
    assert listener.events_received >= len(expected)
    assert listener.malformed_messages == 0


async def test_cyrillic_name_survives_one_byte_writes() -> None:
    """A Cyrillic caller name sent one byte at a time arrives whole."""
    expected = trace_events("06_ringgroup.jsonl", limit=8)
    assert any(e.get("CallerIDName") == "Мария Иванова" for e in expected)
    async with FakeAsterisk(username=USER, secret=SECRET, chunk_size=1) as server:
        listener = listener_for(server)
        async with running(listener):
            await next_resync(listener)
            await server.play(expected)
            got = await collect(listener, len(expected))
    assert_same_events(got, expected)
    names = {e.get("CallerIDName") for e in got if e.name == "Newchannel"}
    assert "Мария Иванова" in names


async def test_split_utf8_and_banner_fed_byte_by_byte() -> None:
    """Deterministic split: every byte in its own data_received call."""
    received: list[Any] = []
    protocol = AmiProtocol(received.append)
    protocol.connection_made(_NullTransport())
    stream = b"Asterisk Call Manager/13.0.0\r\n" + raw(
        "Event: Newchannel", "CallerIDName: Мария Иванова", "Uniqueid: 1.1"
    )
    for index in range(len(stream)):
        protocol.data_received(stream[index : index + 1])
    assert protocol.version == "13.0.0"
    assert len(received) == 1
    assert received[0]["CallerIDName"] == "Мария Иванова"
    assert received[0]["Uniqueid"] == "1.1"


async def test_resync_is_queued_exactly_where_the_list_completes() -> None:
    """Events before CoreShowChannelsComplete precede the resync, later ones follow it."""
    order: list[str] = []
    protocol = AmiProtocol(lambda m: order.append(m["Event"]))
    protocol.connection_made(_NullTransport())
    action = AmiAction(
        {"Action": "CoreShowChannels"}, lambda msgs: order.append(f"resync:{len(msgs)}")
    )
    future = protocol.send(action)
    aid = f"ActionID: {action.id}"
    protocol.data_received(
        raw("Event: Before")
        + raw("Response: Success", aid, "EventList: start", "Message: Channels will follow")
        + raw("Event: Between")
        + raw("Event: CoreShowChannel", aid, "Channel: IAX2/101-1")
        + raw("Event: CoreShowChannelsComplete", aid, "EventList: Complete")
        + raw("Event: After")
    )
    assert len(await asyncio.wait_for(future, WAIT)) == 3
    assert order == ["Before", "Between", "resync:3", "After"]


async def state_lists(listener: AmiListener) -> dict[str, list[dict[str, str]]]:
    """The three state lists queued after a login, by kind."""
    found: dict[str, list[dict[str, str]]] = {}
    while len(found) < 3:
        item = await asyncio.wait_for(listener.events.get(), WAIT)
        if isinstance(item, StateList):
            found[item.kind] = [dict(event.fields) for event in item.items]
    return found


async def test_after_login_device_hint_and_queue_member_states_are_listed(
    asterisk: FakeAsterisk,
) -> None:
    """Right after login the listener reports each device's state, each hint's status and each queue
    member's pause with its reason."""
    asterisk.states.add_hint("101", "IAX2/101")
    asterisk.states.add_member("sales", "IAX2/102")
    asterisk.states.change_device("IAX2/101", "INUSE")
    asterisk.states.change_device("IAX2/104", "UNAVAILABLE")
    asterisk.states.pause("IAX2/102", True, "lunch")
    listener = listener_for(asterisk)
    async with running(listener):
        lists = await state_lists(listener)
    devices = {d["Device"]: d["State"] for d in lists["devices"]}
    assert devices == {"IAX2/101": "INUSE", "IAX2/104": "UNAVAILABLE"}
    [hint] = lists["extensions"]
    assert (hint["Exten"], hint["Status"], hint["StatusText"]) == ("101", "1", "InUse")
    [member] = lists["queue_members"]
    assert (member["Location"], member["Paused"], member["PausedReason"]) == (
        "IAX2/102",
        "1",
        "lunch",
    )


async def test_a_refused_state_list_costs_only_that_list(asterisk: FakeAsterisk) -> None:
    """An Asterisk without ExtensionStateList still gives the device and queue member lists, and one
    line names the refused action and why."""
    del asterisk._handlers["extensionstatelist"]  # an Asterisk without the action
    asterisk.states.change_device("IAX2/101", "RINGING")
    listener = listener_for(asterisk)
    with structlog.testing.capture_logs() as logs:
        async with running(listener):
            found: dict[str, int] = {}
            while "queue_members" not in found:
                item = await asyncio.wait_for(listener.events.get(), WAIT)
                if isinstance(item, StateList):
                    found[item.kind] = len(item.items)
    assert found == {"devices": 1, "queue_members": 0}
    [failure] = [line for line in logs if line["event"] == "ami.state_list_failed"]
    assert failure["action"] == "ExtensionStateList"
    assert "unknown command" in failure["reason"]


async def test_timestamp_header_gives_the_event_time(asterisk: FakeAsterisk) -> None:
    """An event carrying Asterisk's Timestamp header is timed by it, not by the listener's clock."""
    listener = listener_for(asterisk, clock=lambda: 1.0)
    async with running(listener):
        await next_resync(listener)
        await asterisk.send_raw(raw("Event: Stamped", "Timestamp: 1795348362.513420"))
        event = await next_named(listener, "Stamped")
    assert event.time == pytest.approx(1795348362.51342)


# -- bad input -----------------------------------------------------------------


@pytest.mark.parametrize(
    "junk",
    [
        pytest.param(raw("Event: Huge", b"X-Big: " + b"a" * (2 * MIB)), id="2MiB-header"),
        pytest.param(b"b" * (MIB + MIB // 2) + b"\r\n\r\n", id="no-blank-line-for-1.5MiB"),
    ],
)
async def test_oversized_message_is_dropped_once(asterisk: FakeAsterisk, junk: bytes) -> None:
    """A message over the size bound is dropped with one warning giving its size, and the next event
    arrives on the same connection."""
    listener = listener_for(asterisk)
    async with running(listener):
        await next_resync(listener)
        with structlog.testing.capture_logs() as logs:
            await asterisk.send_raw(junk + raw("Event: AfterHuge", "Uniqueid: 2.2"))
            event = await next_item(listener)
        assert isinstance(event, AmiEvent) and event.name == "AfterHuge"
        assert listener.connected
    drops = [line for line in logs if line["event"] == "ami.message_dropped"]
    assert len(drops) == 1
    assert drops[0]["log_level"] == "warning" and drops[0]["size"] > MIB
    assert listener.dropped_messages == 1
    assert listener.reconnects == 0


async def test_non_utf8_byte_becomes_replacement_character(asterisk: FakeAsterisk) -> None:
    """A byte that is not UTF-8 in a caller name becomes the replacement character and the rest of
    the name is kept."""
    listener = listener_for(asterisk)
    async with running(listener):
        await next_resync(listener)
        await asterisk.send_raw(raw("Event: Odd", b"CallerIDName: Ab\xffc \xd0\x9c"))
        event = await next_named(listener, "Odd")
    assert event.get("CallerIDName") == "Ab\ufffdc \u041c"


async def test_garbage_lines_unknown_events_and_repeated_headers(
    asterisk: FakeAsterisk,
) -> None:
    """A message with no Event is counted malformed, junk lines inside an event are skipped, a
    custom event arrives, and repeated ChanVariable headers are kept one per line."""
    listener = listener_for(asterisk)
    async with running(listener):
        await next_resync(listener)
        await asterisk.send_raw(
            raw("just garbage", "no colon here")
            + raw("Event: MyCustomEvent", "not a header line", "Weird:NoSpace", "Key: v")
            + raw("Event: VarSet", "ChanVariable: A=1", "ChanVariable: B=2", "AccountCode: ")
        )
        custom = await next_item(listener)
        varset = await next_item(listener)
    assert isinstance(custom, AmiEvent) and isinstance(varset, AmiEvent)
    assert dict(custom.fields) == {"Event": "MyCustomEvent", "Key": "v"}
    assert dict(varset.fields) == {
        "Event": "VarSet",
        "ChanVariable": "A=1\nB=2",
        "AccountCode": "",
    }
    assert listener.malformed_messages == 1


# -- login, reconnect, watchdog -------------------------------------------------


async def test_bad_secret_is_fatal_and_names_the_user_not_the_secret() -> None:
    """A wrong AMI secret stops the listener after one attempt with an error naming the user and
    address, and the secret appears nowhere."""
    async with FakeAsterisk(username=USER, secret="the-right-one") as server:
        listener = listener_for(server)
        with structlog.testing.capture_logs() as logs, pytest.raises(AmiLoginError) as caught:
            await asyncio.wait_for(listener.run(), WAIT)
    message = str(caught.value)
    assert message == f"AMI login rejected for user {USER} at 127.0.0.1:{server.port}"
    assert SECRET not in message and SECRET not in repr(caught.value)
    assert SECRET not in repr(listener)
    assert any(line["event"] == "ami.login_rejected" for line in logs)
    assert SECRET not in repr(logs)
    assert listener.connect_attempts == 1 and not listener.connected


async def test_asterisk_down_at_start_then_up() -> None:
    """While Asterisk is down the listener retries with growing waits up to the maximum, logs each
    failure as a warning with its reason, and logs in once Asterisk is up."""
    port = free_port()
    statuses = Statuses()
    listener = AmiListener(
        Settings(port=port, reconnect_initial=0.02, reconnect_max=0.1), on_status=statuses
    )
    with structlog.testing.capture_logs() as logs:
        async with running(listener):
            await statuses.wait(lambda lines: len(lines) >= 4)
            assert not listener.connected
            async with FakeAsterisk(port=port, username=USER, secret=SECRET):
                await next_resync(listener)
                assert listener.connected
    assert listener.connect_attempts >= 5
    assert listener.logins == 1
    failures = [line for line in logs if line["event"] == "ami.connect_failed"]
    assert len(failures) >= 4 and all(line["log_level"] == "warning" for line in failures)
    assert all(line["reason"] for line in failures)
    delays = [line["delay"] for line in logs if line["event"] == "ami.reconnecting"]
    assert delays[1] > delays[0]
    assert max(delays) <= 0.1 * 1.1 + 1e-9
    assert statuses.lines[0][0].startswith("disconnected: ")
    assert ("connected", True) in statuses.lines


async def test_dropped_connection_reconnects_with_a_fresh_resync(
    asterisk: FakeAsterisk,
) -> None:
    """After Asterisk drops the connection the listener reconnects and lists the channels still up,
    and its status goes connected, disconnected, connected."""
    statuses = Statuses()
    listener = listener_for(asterisk, on_status=statuses)
    opening = trace_events("06_ringgroup.jsonl", limit=40)
    async with running(listener):
        assert (await next_resync(listener)).channels == []
        await asterisk.play(opening)
        await collect(listener, len(opening))
        live = _live_uniqueids(asterisk)
        assert live, "the opening of the trace leaves channels up"
        asterisk.drop_connections()
        second = await next_resync(listener)
        assert {c.get("Uniqueid") for c in second.channels} == live
        assert all(c.name == "CoreShowChannel" for c in second.channels)
        assert listener.reconnects == 1
    texts = [text for text, _ in statuses.lines]
    assert texts[0] == "connected" and texts[2] == "connected"
    assert texts[1].startswith("disconnected: ")


async def test_unanswered_pings_force_a_reconnect() -> None:
    """An Asterisk that stops answering pings is noticed within the ping interval plus timeout,
    logged, and reconnected to."""
    statuses = Statuses()
    async with FakeAsterisk(username=USER, secret=SECRET, answer_pings=False) as server:
        listener = listener_for(server, ping_interval=0.2, ping_timeout=0.2, on_status=statuses)
        with structlog.testing.capture_logs() as logs:
            async with running(listener):
                await next_resync(listener)
                started = time.monotonic()
                await statuses.wait(lambda lines: len(lines) >= 2)
                noticed = time.monotonic() - started
                await next_resync(listener)
    assert noticed < 0.2 + 0.2 + 0.5
    assert statuses.lines[1][0].startswith("disconnected: no answer to Ping")
    assert any(line["event"] == "ami.ping_timeout" for line in logs)
    assert listener.reconnects >= 1


async def test_shutdown_event_is_queued_then_the_listener_reconnects(
    asterisk: FakeAsterisk,
) -> None:
    """Asterisk's Shutdown event is passed on and the listener then logs in again by itself."""
    listener = listener_for(asterisk)
    async with running(listener):
        await next_resync(listener)
        await asterisk.send_raw(raw("Event: Shutdown", "Shutdown: Cleanly", "Restart: True"))
        shutdown = await next_item(listener)
        assert isinstance(shutdown, AmiEvent) and shutdown.name == "Shutdown"
        await next_resync(listener)
        assert listener.reconnects == 1


# -- actions, close, secrets, socket -----------------------------------------------


async def test_send_action_returns_the_response(asterisk: FakeAsterisk) -> None:
    """An Originate sent through the listener reaches Asterisk once and its response comes back
    matched by ActionID."""
    listener = listener_for(asterisk)
    originate = {
        "Action": "Originate",
        "Channel": "IAX2/101/101",
        "Context": "callback",
        "Exten": "79161234506",
        "Priority": "1",
        "Async": "true",
    }
    async with running(listener):
        await next_resync(listener)
        responses = await listener.send_action(originate, timeout=WAIT)
        pong = await listener.send_action({"Action": "Ping"}, timeout=WAIT)
    assert len(responses) == 1
    assert responses[0].get("Response") == "Success"
    assert pong[0].get("Response") == "Success"
    sent = [a for a in asterisk.actions if a.get("Action") == "Originate"]
    assert len(sent) == 1 and sent[0]["Exten"] == "79161234506"
    assert sent[0]["ActionID"] == responses[0].get("ActionID")


async def test_send_action_timeout_leaves_no_stale_entry() -> None:
    """An action Asterisk never answers fails after its timeout with a message naming it, and the
    connection stays up with nothing left waiting."""
    async with FakeAsterisk(username=USER, secret=SECRET, answer_pings=False) as server:
        listener = listener_for(server)
        async with running(listener):
            await login_answered(listener)
            protocol = listener._protocol
            assert protocol is not None
            with pytest.raises(TimeoutError, match=r"Ping got no answer within 0\.1 s"):
                await listener.send_action({"Action": "Ping"}, timeout=0.1)
            assert protocol.responses == {}
            assert listener.connected


async def test_send_action_before_login_raises_promptly(asterisk: FakeAsterisk) -> None:
    """Sending an action before the listener has logged in fails at once with a connection error."""
    listener = listener_for(asterisk)
    started = time.monotonic()
    with pytest.raises(ConnectionError):
        await listener.send_action({"Action": "Ping"}, timeout=WAIT)
    assert time.monotonic() - started < 0.5


async def test_close_sends_logoff_and_run_returns(asterisk: FakeAsterisk) -> None:
    """Closing the listener sends Logoff, ends its run without an error, can be done twice, and
    later actions fail as not connected."""
    statuses = Statuses()
    listener = listener_for(asterisk, on_status=statuses)
    task = asyncio.create_task(listener.run())
    await next_resync(listener)
    await asyncio.wait_for(listener.close(), WAIT)
    await asyncio.wait_for(task, WAIT)  # returns, does not raise
    await listener.close()  # idempotent
    assert not listener.connected
    assert [a.get("Action") for a in asterisk.actions][-1] == "Logoff"
    assert statuses.lines[-1][1] is False
    with pytest.raises(ConnectionError):
        await listener.send_action({"Action": "Ping"})


async def test_close_while_asterisk_is_down_stops_the_retry_loop() -> None:
    """Closing the listener while it waits to retry a down Asterisk returns at once instead of after
    the retry wait."""
    statuses = Statuses()
    settings = Settings(port=free_port(), reconnect_initial=5, reconnect_max=5)
    listener = AmiListener(settings, on_status=statuses)
    task = asyncio.create_task(listener.run())
    await statuses.wait(lambda lines: len(lines) >= 1)  # first attempt refused, now backing off
    await asyncio.wait_for(listener.close(), WAIT)
    await asyncio.wait_for(task, WAIT)


async def test_secret_never_logged_when_panoramisk_fails_to_send(
    asterisk: FakeAsterisk, caplog: pytest.LogCaptureFixture
) -> None:
    """When a login action cannot be sent the AMI secret is masked in every log line and in the
    error."""
    caplog.set_level(logging.DEBUG)
    listener = listener_for(asterisk)
    with structlog.testing.capture_logs() as logs:
        async with running(listener):
            await login_answered(listener)
            protocol = listener._protocol
            assert protocol is not None
            real = protocol.transport
            protocol.transport = _BrokenWrites(real)
            login = {"Action": "Login", "Username": USER, "Secret": SECRET}
            with pytest.raises(TimeoutError) as caught:
                await listener.send_action(login, timeout=0.2)
            protocol.transport = real
            # the filter itself, for a record that does carry the secret (an Action's %r)
            logging.getLogger("panoramisk.ami_protocol").error("Fail to send %r", login)
    failed = [r for r in caplog.records if r.getMessage().startswith("Fail to send")]
    assert len(failed) == 2
    assert failed[0].exc_info is not None  # panoramisk's own log.exception path
    assert "***" in failed[1].getMessage()
    assert SECRET not in caplog.text
    assert SECRET not in str(caught.value)
    assert SECRET not in repr(logs)
    assert all(SECRET not in record.getMessage() for record in caplog.records)


async def test_socket_has_tcp_keepalive(asterisk: FakeAsterisk) -> None:
    """The AMI connection has TCP keepalive on, so a silently dead link is found."""
    listener = listener_for(asterisk)
    async with running(listener):
        await next_resync(listener)
        protocol = listener._protocol
        assert protocol is not None
        sock = protocol.transport.get_extra_info("socket")
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) != 0


# -- helpers ---------------------------------------------------------------------


def _live_uniqueids(server: FakeAsterisk) -> set[str]:
    live = server.live_channels
    values = live.values() if isinstance(live, dict) else live
    return {str(channel["Uniqueid"]) for channel in values}


class _NullTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass


class _BrokenWrites:
    """A transport whose write() fails, so panoramisk logs 'Fail to send %r'."""

    def __init__(self, real: asyncio.BaseTransport) -> None:
        self._real = real

    def write(self, data: bytes) -> None:
        raise OSError("simulated write failure")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)
