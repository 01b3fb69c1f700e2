"""FakeAsterisk over real loopback sockets: protocol details, panoramisk, faults."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from panoramisk import Manager
from waiting import until

from pbx_tracker.sim.asterisk import FakeAsterisk
from pbx_tracker.sim.generated_day import generate_day
from pbx_tracker.sim.scenarios import merge
from pbx_tracker.sim.traces import trace_events

TRACES = Path(__file__).parents[1] / "data" / "asterisk-traces"
TIMEOUT = 5.0
MARIA = "Мария Иванова"


# -- helpers ------------------------------------------------------------------


class RawClient:
    """A minimal AMI client for protocol-level assertions (bytes in, dicts out)."""

    opened: list[RawClient] = []  # closed by the autouse fixture below

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.banner = b""
        RawClient.opened.append(self)

    @classmethod
    async def connect(cls, fake: FakeAsterisk) -> RawClient:
        reader, writer = await asyncio.open_connection(fake.host, fake.port)
        client = cls(reader, writer)
        client.banner = await asyncio.wait_for(reader.readline(), TIMEOUT)
        return client

    async def send(self, **fields: str) -> None:
        self.writer.write(_encode(fields))
        await self.writer.drain()

    async def read_raw(self) -> bytes:
        """One message's bytes, up to and including the blank line."""
        return await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), TIMEOUT)

    async def read(self) -> dict[str, str]:
        raw = await self.read_raw()
        return _parse(raw)

    async def read_many(self, count: int) -> list[dict[str, str]]:
        return [await self.read() for _ in range(count)]

    async def login(self, secret: str = "tracker-secret", **extra: str) -> dict[str, str]:
        await self.send(Action="Login", ActionID="l1", Username="tracker", Secret=secret, **extra)
        return await self.read()

    async def at_eof(self) -> bool:
        """True once the server closed the connection (EOF or reset)."""
        try:
            rest = await asyncio.wait_for(self.reader.read(), TIMEOUT)
        except ConnectionError:
            return True
        return rest == b"" or self.reader.at_eof()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


def _encode(fields: dict[str, str]) -> bytes:
    return "".join(f"{k}: {v}\r\n" for k, v in fields.items()).encode() + b"\r\n"


def _parse(raw: bytes) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in raw.decode("utf-8").split("\r\n"):
        key, sep, value = line.partition(": ")
        if sep:
            fields[key] = value
    return fields


class Collector:
    """A panoramisk `'*'` callback that can be awaited."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self._changed = asyncio.Event()

    def __call__(self, manager: Any, event: Any) -> None:
        self.events.append(event)
        self._changed.set()

    async def wait(self, predicate: Callable[[list[Any]], bool]) -> None:
        await until(lambda: predicate(self.events), self._changed, TIMEOUT)

    def named(self, name: str) -> list[Any]:
        return [e for e in self.events if e.event == name]


@contextlib.asynccontextmanager
async def panoramisk(fake: FakeAsterisk, **options: Any) -> AsyncIterator[tuple[Any, Collector]]:
    collector = Collector()
    manager = Manager(
        loop=asyncio.get_running_loop(), ping_delay=3600, **fake.manager_config(), **options
    )
    manager.register_event("*", collector)
    await manager.connect()
    try:
        await fake.wait_for_login()
        yield manager, collector
    finally:
        manager.close()


@pytest.fixture(autouse=True)
async def close_raw_clients() -> AsyncIterator[None]:
    yield
    while RawClient.opened:
        await RawClient.opened.pop().close()


@pytest.fixture
async def loop_errors() -> AsyncIterator[list[dict[str, Any]]]:
    """Everything that reaches the loop's exception handler (must stay empty)."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    yield errors
    loop.set_exception_handler(previous)


@pytest.fixture
async def fake(loop_errors: list[dict[str, Any]]) -> AsyncIterator[FakeAsterisk]:
    async with FakeAsterisk() as server:
        yield server
    assert loop_errors == []


def trace(name: str) -> list[dict[str, str]]:
    return trace_events(TRACES / f"{name}.jsonl")


# -- captures -----------------------------------------------------------------


def test_trace_events_keep_only_the_call_traffic() -> None:
    """A captured trace played back holds only the call's events, without the login response, boot
    and auth events, with times counted from its first event."""
    lines = (TRACES / "01_answered_simple.jsonl").read_text(encoding="utf-8").splitlines()
    messages = trace("01_answered_simple")
    assert len(messages) == len(lines) - 4  # Login response, FullyBooted, SuccessfulAuth, Goodbye
    assert messages[0]["Event"] == "Newchannel"
    assert messages[0]["_ts"] == "0.000000"
    assert all("Response" not in m for m in messages)
    assert {"FullyBooted", "SuccessfulAuth"}.isdisjoint(m["Event"] for m in messages)
    assert float(messages[-1]["_ts"]) == pytest.approx(6.516915 - 0.503662, abs=1e-5)


# -- login and actions --------------------------------------------------------


async def test_banner_login_and_fully_booted(fake: FakeAsterisk) -> None:
    """A client of the fake Asterisk gets Asterisk's banner, an accepted login and a FullyBooted
    event, as from a real one."""
    client = await RawClient.connect(fake)
    assert client.banner == b"Asterisk Call Manager/13.0.0\r\n"
    await client.send(Action="Login", ActionID="l1", Username="tracker", Secret="tracker-secret")
    assert await client.read_raw() == (
        b"Response: Success\r\nActionID: l1\r\nMessage: Authentication accepted\r\n\r\n"
    )
    booted = await client.read()
    assert booted["Event"] == "FullyBooted"
    assert (booted["Privilege"], booted["Status"]) == ("system,all", "Fully Booted")
    await fake.wait_for_login()
    assert fake.actions[0]["Secret"] == "tracker-secret"
    assert (fake.clients, fake.logins) == (1, 1)
    await client.close()


async def test_wrong_secret_is_refused_and_the_connection_closed(fake: FakeAsterisk) -> None:
    """A wrong secret is answered "Authentication failed" and the connection closed, as Asterisk
    does."""
    client = await RawClient.connect(fake)
    assert await client.login(secret="wrong") == {
        "Response": "Error",
        "ActionID": "l1",
        "Message": "Authentication failed",
    }
    assert await client.at_eof()
    assert fake.clients == 0


async def test_actions_before_login_are_denied(fake: FakeAsterisk) -> None:
    """An action sent before login is answered "Permission denied", and logging in afterwards still
    works."""
    client = await RawClient.connect(fake)
    await client.send(Action="CoreShowChannels", ActionID="c1")
    assert await client.read() == {
        "Response": "Error",
        "ActionID": "c1",
        "Message": "Permission denied",
    }
    assert (await client.login())["Response"] == "Success"
    await client.close()


async def test_md5_challenge_login(fake: FakeAsterisk) -> None:
    """A client logging in with an MD5 challenge instead of the plain secret is accepted."""
    client = await RawClient.connect(fake)
    await client.send(Action="Challenge", ActionID="ch", AuthType="MD5")
    challenge = (await client.read())["Challenge"]
    key = hashlib.md5((challenge + "tracker-secret").encode()).hexdigest()
    await client.send(Action="Login", ActionID="l1", AuthType="MD5", Username="tracker", Key=key)
    assert (await client.read())["Message"] == "Authentication accepted"
    await client.close()


async def test_ping_is_answered_with_its_action_id(fake: FakeAsterisk) -> None:
    """A Ping is answered Pong with its ActionID and a current timestamp, headers in Asterisk's
    order."""
    client = await RawClient.connect(fake)
    await client.login()
    await client.read()  # FullyBooted
    await client.send(Action="Ping", ActionID="p1")
    pong = await client.read()
    assert list(pong) == ["Response", "ActionID", "Ping", "Timestamp"]
    assert (pong["Response"], pong["ActionID"], pong["Ping"]) == ("Success", "p1", "Pong")
    assert float(pong["Timestamp"]) > 1.7e9
    await client.close()


async def test_ignored_pings_simulate_a_half_open_peer(fake: FakeAsterisk) -> None:
    """With pings ignored a Ping gets no answer while other actions still do, as from a half-open
    connection, until pings are answered again."""
    client = await RawClient.connect(fake)
    await client.login()
    await client.read()
    fake.set_answer_pings(False)
    await client.send(Action="Ping", ActionID="p1")
    await client.send(Action="Nonsense", ActionID="n2")
    # the next reply is the one to the second action: the ping got none
    assert await client.read() == {
        "Response": "Error",
        "ActionID": "n2",
        "Message": "Invalid/unknown command",
    }
    fake.set_answer_pings(True)
    await client.send(Action="Ping", ActionID="p3")
    assert (await client.read())["ActionID"] == "p3"
    await client.close()


async def test_originate_is_queued_and_recorded(fake: FakeAsterisk) -> None:
    """An Originate sent through panoramisk is answered "successfully queued" and kept so a test can
    check its channel and number."""
    async with panoramisk(fake) as (manager, _):
        action = {"Action": "Originate", "Channel": "IAX2/101/101", "Context": "callback"}
        action.update(Exten="79161234503", Priority="1", Async="false")
        response = await asyncio.wait_for(manager.send_action(action), TIMEOUT)
        assert response.response == "Success"
        assert response.message == "Originate successfully queued"
    (originate,) = fake.actions_named("originate")
    assert (originate["Channel"], originate["Exten"]) == ("IAX2/101/101", "79161234503")


async def test_logoff_says_goodbye_and_closes(fake: FakeAsterisk) -> None:
    """Logoff is answered Goodbye and the connection is closed."""
    client = await RawClient.connect(fake)
    await client.login()
    await client.read()
    await client.send(Action="Logoff", ActionID="bye")
    assert await client.read() == {
        "Response": "Goodbye",
        "ActionID": "bye",
        "Message": "Thanks for all the fish.",
    }
    assert await client.at_eof()


# -- playing events -----------------------------------------------------------


async def test_panoramisk_receives_played_events_with_utf8_intact(fake: FakeAsterisk) -> None:
    """panoramisk receives the played calls' events in order, Cyrillic names intact and without the
    trace's time field."""
    played = trace("01_answered_simple") + trace("06_ringgroup")
    async with panoramisk(fake) as (_, collector):
        await fake.play(played)
        await collector.wait(lambda events: len(events) >= len(played) + 1)
    received = [e for e in collector.events if e.event != "FullyBooted"]
    assert [e.event for e in received] == [m["Event"] for m in played]
    assert received[0]["CallerIDName"] == "Ivan Petrov"
    maria = [e for e in received if e.get("CallerIDNum") == "79161234506"]
    assert maria
    assert {e["CallerIDName"] for e in maria} == {MARIA}
    assert all("_ts" not in e for e in received)


async def test_bare_panoramisk_drops_split_utf8(loop_errors: list[dict[str, Any]]) -> None:
    """Documents panoramisk 1.4's defect that our AMI wrapper fixes (ASTERISK.md §0)."""
    newchannel = trace("06_ringgroup")[0]
    async with FakeAsterisk(chunk_size=1) as fake, panoramisk(fake) as (_, collector):
        await fake.play([newchannel])
        await collector.wait(lambda events: bool(collector.named("Newchannel")))
        (received,) = collector.named("Newchannel")
        assert received["CallerIDNum"] == "79161234506"
        assert received["CallerIDName"] != MARIA


async def test_chunked_stream_keeps_every_byte(loop_errors: list[dict[str, Any]]) -> None:
    """An event sent one byte at a time arrives whole, every header in order, with no loop error."""
    newchannel = trace("06_ringgroup")[0]
    async with FakeAsterisk(chunk_size=1) as fake:
        client = await RawClient.connect(fake)
        await client.login()
        await client.read()
        await fake.play([newchannel])
        received = await client.read()
        assert received["CallerIDName"] == MARIA
        assert list(received) == [k for k in newchannel if k != "_ts"]
        await client.close()
    assert loop_errors == []


async def test_timestamps_follow_the_trace_clock(loop_errors: list[dict[str, Any]]) -> None:
    """With timestamps on, each event carries a Timestamp header: the given start plus the event's
    time in the trace."""
    messages = trace("01_answered_simple")[:2]
    messages[1] = {**messages[1], "_ts": "2.500000"}
    async with FakeAsterisk(timestamp_events=True) as fake:
        client = await RawClient.connect(fake)
        await client.login()
        await client.read()
        await fake.play(messages, epoch=1000.0)
        first, second = await client.read_many(2)
        assert list(first)[:3] == ["Event", "Privilege", "Timestamp"]
        assert (first["Timestamp"], second["Timestamp"]) == ("1000.000000", "1002.500000")
        assert "_ts" not in first
        await client.close()


async def test_play_waits_out_the_gaps_at_the_given_speed(fake: FakeAsterisk) -> None:
    """Playing a trace waits out the gaps between its events, shortened by the given speed."""
    messages = [{"_ts": "0.0", "Event": "UserEvent"}, {"_ts": "0.3", "Event": "UserEvent"}]
    client = await RawClient.connect(fake)
    await client.login()
    await client.read()
    loop = asyncio.get_running_loop()
    started = loop.time()
    await fake.play(messages, speed=3.0)
    assert loop.time() - started >= 0.09
    assert len(await client.read_many(2)) == 2
    await client.close()


async def test_events_header_filters_by_class(fake: FakeAsterisk) -> None:
    """A client that logged in with Events: agent receives only the agent class events of a queue
    call."""
    client = await RawClient.connect(fake)
    await client.login(Events="agent")
    queue = trace("07_queue_answered")
    await fake.play(queue)
    await fake.send_event(Event="UserEvent", Privilege="user,all", UserEvent="end")
    await fake.play([{"Event": "AgentCalled", "Privilege": "agent,all", "Queue": "last"}])
    wanted = [m for m in queue if "agent" in m["Privilege"].split(",")]
    received = await client.read_many(len(wanted) + 1)
    assert [m["Event"] for m in received] == [m["Event"] for m in wanted] + ["AgentCalled"]
    assert received[-1]["Queue"] == "last"
    await client.close()


async def test_a_generated_day_plays_through(fake: FakeAsterisk) -> None:
    """A generated day of calls plays through, each call's events arrive, and no channel is left up
    at the end."""
    day = generate_day(6, dids=[("74990000041", "vk-ads")], seed=5)
    messages = merge(day)
    async with panoramisk(fake) as (_, collector):
        await fake.play(messages)
        await collector.wait(lambda events: len(events) >= len(messages) + 1)
    linkedids = {e.get("Linkedid") for e in collector.events} - {None, ""}
    assert linkedids == {c.expected.linkedid for c in day}
    assert fake.live_channels == {}


# -- channel table ------------------------------------------------------------


async def test_core_show_channels_lists_the_live_channels_mid_call(fake: FakeAsterisk) -> None:
    """Halfway through a ring-group call CoreShowChannels lists exactly the channels still up, in
    Asterisk's format, and none is left once the call ends."""
    ringgroup = trace("06_ringgroup")
    half = ringgroup[: len(ringgroup) // 2]
    created = [m["Uniqueid"] for m in half if m["Event"] == "Newchannel"]
    gone = {m["Uniqueid"] for m in half if m["Event"] == "Hangup"}
    live = [u for u in created if u not in gone]
    assert len(live) >= 2
    client = await RawClient.connect(fake)
    await client.login()
    await client.read()
    await fake.play(half)
    await client.read_many(len(half))
    await client.send(Action="CoreShowChannels", ActionID="csc-1")
    start = await client.read()
    assert start == {
        "Response": "Success",
        "ActionID": "csc-1",
        "EventList": "start",
        "Message": "Channels will follow",
    }
    channels = await client.read_many(len(live))
    complete = await client.read()
    assert [c["Event"] for c in channels] == ["CoreShowChannel"] * len(live)
    assert all(c["ActionID"] == "csc-1" for c in channels)
    assert [c["Uniqueid"] for c in channels] == live
    assert list(channels[0])[:4] == ["Event", "ActionID", "Channel", "ChannelState"]
    assert list(channels[0])[-4:] == ["Application", "ApplicationData", "Duration", "BridgeId"]
    assert channels[0]["CallerIDName"] == MARIA
    assert complete == {
        "Event": "CoreShowChannelsComplete",
        "ActionID": "csc-1",
        "EventList": "Complete",
        "ListItems": str(len(live)),
    }
    await fake.play(ringgroup[len(half) :])
    assert fake.live_channels == {}
    await client.close()


async def test_live_channels_follow_state_and_bridges(fake: FakeAsterisk) -> None:
    """Once the manager's leg enters the bridge it is shown as Up, in that bridge, running Dial."""
    answered = trace("01_answered_simple")
    bridged = next(i for i, m in enumerate(answered) if m["Event"] == "BridgeEnter")
    await fake.play(answered[: bridged + 1])
    manager_leg = answered[bridged]["Uniqueid"]
    snapshot = fake.live_channels[manager_leg]
    assert (snapshot["ChannelStateDesc"], snapshot["BridgeId"]) == (
        "Up",
        answered[bridged]["BridgeUniqueid"],
    )
    assert snapshot["Application"] == "AppDial"


async def test_panoramisk_collects_core_show_channels_as_a_list(fake: FakeAsterisk) -> None:
    """panoramisk gets CoreShowChannels as one list holding each live channel and the closing
    event."""
    await fake.play(trace("04_missed_caller_abandon")[:60])
    async with panoramisk(fake) as (manager, _):
        action = {"Action": "CoreShowChannels"}
        listing = await asyncio.wait_for(manager.send_action(action), TIMEOUT)
    assert [m.event for m in listing[1:]] == ["CoreShowChannel"] * len(fake.live_channels) + [
        "CoreShowChannelsComplete"
    ]
    assert {m.uniqueid for m in listing[1:-1]} == set(fake.live_channels)


# -- faults -------------------------------------------------------------------


async def test_drop_connections_closes_clients_and_keeps_listening(fake: FakeAsterisk) -> None:
    """Dropping the connections closes every client while the fake Asterisk keeps listening, so a
    client can log in again."""
    client = await RawClient.connect(fake)
    await client.login()
    await client.read()
    await fake.wait_for_login()
    fake.drop_connections()
    assert await client.at_eof()
    await fake.wait_until(lambda: fake.connections == 0, what="no connections")
    again = await RawClient.connect(fake)
    assert (await again.login())["Response"] == "Success"
    await again.close()


async def test_restart_listens_again_on_the_same_port(fake: FakeAsterisk) -> None:
    """A restarted fake Asterisk has no channels, listens on the same port, and panoramisk logs in
    again by itself."""
    port = fake.port
    await fake.play(trace("01_answered_simple")[:10])
    assert fake.live_channels
    async with panoramisk(fake, reconnect_timeout=0) as (_, collector):
        await fake.restart()
        assert fake.live_channels == {}  # a restarted Asterisk has no channels
        assert fake.port == port
        await fake.wait_until(lambda: fake.logins >= 2, what="panoramisk's second login")
        await collector.wait(lambda _: len(collector.named("FullyBooted")) >= 2)
    client = await RawClient.connect(fake)
    assert (await client.login())["Response"] == "Success"
    await client.close()


async def test_send_raw_and_garbage_are_handled(fake: FakeAsterisk) -> None:
    """Garbage from a client is answered "Missing action", raw bytes are passed as they are, and
    clients cutting off mid-message break nothing."""
    client = await RawClient.connect(fake)
    client.writer.write(b"\x00\xff\xfe no colon here\r\n\r\n")
    client.writer.write(b"Garbage: \xff\xfe\r\n\r\n")
    client.writer.write(b"X" * 100_000 + b"\r\n\r\n")
    await client.writer.drain()
    assert (await client.read())["Message"] == "Missing action in request"
    await client.login()
    await client.read()
    await fake.send_raw(b"\xff\xfeNot AMI\r\n\r\n")
    assert await client.read_raw() == b"\xff\xfeNot AMI\r\n\r\n"
    client.writer.transport.abort()  # disconnect in the middle of nothing
    half = await RawClient.connect(fake)
    half.writer.write(b"Action: Lo")
    half.writer.transport.abort()  # disconnect in the middle of an action
    await fake.wait_until(lambda: fake.connections == 0, what="both clients gone")
    await fake.play(trace("05_busy_all"))  # nobody listening: nothing breaks
    assert fake.live_channels == {}


async def test_stop_closes_every_client_promptly(loop_errors: list[dict[str, Any]]) -> None:
    """Stopping the fake Asterisk closes logged-in and anonymous clients within a second and refuses
    new connections."""
    fake = FakeAsterisk()
    await fake.start()
    logged_in = await RawClient.connect(fake)
    await logged_in.login()
    await logged_in.read()
    anonymous = await RawClient.connect(fake)
    async with asyncio.timeout(1.0):
        await fake.stop()
    assert await logged_in.at_eof()
    assert await anonymous.at_eof()
    with pytest.raises(OSError):
        await asyncio.open_connection(fake.host, fake.port)
    assert loop_errors == []


async def test_wait_for_login_times_out_with_a_clear_message(fake: FakeAsterisk) -> None:
    """Waiting for a login that never comes fails after its timeout with a message saying what was
    waited for."""
    with pytest.raises(TimeoutError, match=r"logged-in client.*within 0.05 s"):
        await fake.wait_for_login(timeout=0.05)


async def test_a_client_that_stops_reading_is_dropped_like_asterisk_does(
    loop_errors: list[dict[str, Any]],
) -> None:
    """manager.conf `writetimeout`: a blocked write drops the session, others go on."""
    burst = trace("07_queue_answered") * 200  # ~15 MB: more than the socket buffers hold
    async with FakeAsterisk(write_timeout=0.05) as fake:
        stuck = await RawClient.connect(fake)
        await stuck.login()
        await fake.wait_for_login()
        await fake.play(burst)
        await fake.wait_until(lambda: fake.connections == 0, what="the stuck client dropped")
        assert fake.clients == 0
    assert loop_errors == []
