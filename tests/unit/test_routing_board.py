"""Which managers can take a call, as the board learns it from AMI events.

Events are shaped like the captured PBX's (tests/data/asterisk-traces): IAX2
desk phones named after their extension (channels ``IAX2/101-11234``), calls
arriving on ``IAX2/carrier-<n>``, queue members ``IAX2/101/101`` with state
interface ``IAX2/101``.
"""

from __future__ import annotations

from datetime import datetime
from itertools import count
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from clocks import SecondsClock

from pbx_tracker.ami.capture import read_capture
from pbx_tracker.calls.events import AmiEvent
from pbx_tracker.config import Settings, settings_from_mapping
from pbx_tracker.routing.availability import ManagerBoard, ManagerStatus
from traces import TRACES

MOSCOW = ZoneInfo("Europe/Moscow")
MONDAY_NOON = datetime(2026, 11, 23, 12, 0, tzinfo=MOSCOW).timestamp()
MANAGERS = [
    {"name": "Anna", "extension": "101", "group": "sales"},
    {"name": "Boris", "extension": "102", "group": "sales"},
    {"name": "Vera", "extension": "103", "group": "sales"},
]
S = ManagerStatus


def make_settings(routing: dict[str, Any] | None = None, managers: Any = None) -> Settings:
    data: dict[str, Any] = {
        "ami": {"secret": "s"},
        "managers": MANAGERS if managers is None else managers,
        "routing": {"timezone": "Europe/Moscow", **(routing or {})},
    }
    return settings_from_mapping(data, environ={})


def _board(settings: Settings, clock: SecondsClock) -> ManagerBoard:
    return ManagerBoard(settings.routing, settings.directory, clock)


class Pbx:
    """Feeds a board the events of calls to the managers' IAX2 phones."""

    def __init__(self, board: ManagerBoard, clock: SecondsClock) -> None:
        self.board, self.clock = board, clock
        self.ids = count(1)
        self.names: dict[str, str] = {}
        self.linked: dict[str, str] = {}

    def send(self, event: str, **fields: str) -> None:
        self.board.feed(AmiEvent({"Event": event, "Privilege": "call,all", **fields}, self.clock()))

    def channel(self, uniqueid: str) -> dict[str, str]:
        return {
            "Channel": self.names[uniqueid],
            "Uniqueid": uniqueid,
            "Linkedid": self.linked[uniqueid],
        }

    def new_channel(self, name: str, state: str, linkedid: str | None = None) -> str:
        uniqueid = f"1795348313.{next(self.ids)}"
        self.names[uniqueid], self.linked[uniqueid] = name, linkedid or uniqueid
        self.send("Newchannel", ChannelState=state, Context="from-trunk", **self.channel(uniqueid))
        return uniqueid

    def call(self) -> str:
        """A customer's call arrives on the trunk; its Uniqueid (= Linkedid)."""
        return self.new_channel(f"IAX2/carrier-{next(self.ids)}", "4")

    def ring(self, call: str, extension: str) -> str:
        """``call`` dials ``extension``'s phone, which rings; the leg's Uniqueid."""
        leg = self.new_channel(f"IAX2/{extension}-{next(self.ids)}", "0", linkedid=call)
        dest = {f"Dest{k}": v for k, v in self.channel(leg).items()}
        self.send("DialBegin", **self.channel(call), **dest, DialString=f"{extension}/{extension}")
        self.send("Newstate", ChannelState="5", ChannelStateDesc="Ringing", **self.channel(leg))
        return leg

    def dial_end(self, call: str, leg: str, status: str) -> None:
        dest = {f"Dest{k}": v for k, v in self.channel(leg).items()}
        self.send("DialEnd", **self.channel(call), **dest, DialStatus=status)

    def answer(self, call: str, leg: str) -> None:
        self.send("Newstate", ChannelState="6", ChannelStateDesc="Up", **self.channel(leg))
        self.dial_end(call, leg, "ANSWER")
        for uniqueid in (leg, call):
            self.send("BridgeEnter", BridgeUniqueid="b-1", **self.channel(uniqueid))

    def hangup(self, uniqueid: str) -> None:
        self.send("Hangup", Cause="16", **self.channel(uniqueid))

    def talk(self, extension: str, seconds: float) -> None:
        """A whole answered call of ``seconds`` to ``extension``."""
        call = self.call()
        leg = self.ring(call, extension)
        self.answer(call, leg)
        self.clock.advance(seconds)
        self.hangup(leg)
        self.hangup(call)

    def device(self, device: str, state: str) -> None:
        self.send("DeviceStateChange", Device=device, State=state)

    def hint(self, extension: str, status: int) -> None:
        self.send(
            "ExtensionStatus", Exten=extension, Context="ext-local", Hint=f"IAX2/{extension}",
            Status=str(status), StatusText="",
        )  # fmt: skip

    def member(
        self, queue: str, extension: str, event: str = "QueueMemberStatus", **more: str
    ) -> None:
        self.send(event, **member_fields(queue, extension, **more))


def member_fields(queue: str, extension: str, **more: str) -> dict[str, str]:
    """A queue member as in the traces' QueueMemberStatus."""
    return {
        "Queue": queue,
        "MemberName": f"Manager {extension}",
        "Interface": f"IAX2/{extension}/{extension}",
        "StateInterface": f"IAX2/{extension}",
        "Membership": "static",
        "CallsTaken": "0",
        "LastCall": "0",
        "InCall": "0",
        "Status": "1",
        "Paused": "0",
        "Wrapuptime": "0",
        **more,
    }


@pytest.fixture
def clock() -> SecondsClock:
    return SecondsClock(MONDAY_NOON)


@pytest.fixture
def board(clock: SecondsClock) -> ManagerBoard:
    return _board(make_settings({"wrapup_seconds": 30}), clock)


@pytest.fixture
def pbx(board: ManagerBoard, clock: SecondsClock) -> Pbx:
    return Pbx(board, clock)


# --- one source at a time ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("NOT_INUSE", S.FREE),
        ("UNKNOWN", S.FREE),  # IAX2 peers without qualify, as in the traces
        ("INUSE", S.ON_CALL),
        ("ONHOLD", S.ON_CALL),
        ("RINGINUSE", S.ON_CALL),
        ("BUSY", S.BUSY),
        ("RINGING", S.RINGING),
        ("UNAVAILABLE", S.UNAVAILABLE),
        ("INVALID", S.UNAVAILABLE),
    ],
)
def test_phone_state(pbx: Pbx, board: ManagerBoard, state: str, expected: ManagerStatus) -> None:
    """Each device state Asterisk reports for a manager's phone shows the manager as free, on a
    call, busy, ringing or unavailable (an IAX2 phone in UNKNOWN state counts as free), leaving the
    other managers free."""
    pbx.device("IAX2/101", state)
    assert board.status("101") is expected
    assert board.status("102") is S.FREE


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (0, S.FREE),
        (1, S.ON_CALL),
        (2, S.BUSY),
        (4, S.UNAVAILABLE),
        (8, S.RINGING),
        (9, S.ON_CALL),
        (16, S.ON_CALL),
        (17, S.ON_CALL),
    ],
)
def test_hint_state(pbx: Pbx, board: ManagerBoard, code: int, expected: ManagerStatus) -> None:
    """Each extension hint state Asterisk reports (idle, in use, busy, unavailable, ringing, on hold
    and their mixes) shows the manager with the matching status."""
    pbx.hint("101", code)
    assert board.status("101") is expected


def test_removed_hint_is_forgotten(pbx: Pbx, board: ManagerBoard) -> None:
    """A hint Asterisk removes no longer keeps the manager busy: they are free again."""
    pbx.hint("101", 1)
    pbx.hint("101", -1)
    assert board.status("101") is S.FREE


def test_devices_and_events_of_others_are_ignored(pbx: Pbx, board: ManagerBoard) -> None:
    """Queue devices, trunks, Local channels and phones of no manager do not change any manager's
    status, and an extension that is nobody's phone counts as unavailable."""
    pbx.device("Queue:sales_avail", "INUSE")
    pbx.device("IAX2/carrier", "INVALID")
    pbx.device("IAX2/104", "UNAVAILABLE")  # a phone, but nobody's
    pbx.send("Newchannel", Channel="Local/101@from-internal-0001;1", Uniqueid="9.1", Linkedid="9.1")
    pbx.send("VarSet", Channel="IAX2/101-1", Variable="X", Value="1")
    assert [view.status for view in board.snapshot()] == [S.FREE, S.FREE, S.FREE]
    assert board.status("104") is S.UNAVAILABLE  # no such manager


def test_a_call_through_its_states(pbx: Pbx, board: ManagerBoard, clock: SecondsClock) -> None:
    """A manager shows ringing, then on a call, then in wrap-up for the configured 30 s after
    hanging up (with the end time remembered), then free."""
    call = pbx.call()
    leg = pbx.ring(call, "101")
    assert board.status("101") is S.RINGING
    pbx.answer(call, leg)
    assert board.status("101") is S.ON_CALL
    clock.advance(60)
    pbx.hangup(leg)
    assert board.last_call_end("101") == clock.now
    assert board.status("101") is S.WRAPUP
    clock.advance(30)
    assert board.status("101") is S.FREE


def test_own_count_of_calls_covers_phones_that_report_badly(pbx: Pbx, board: ManagerBoard) -> None:
    """A manager whose phone never reports being in use is still shown on a call while they talk."""
    pbx.device("IAX2/101", "NOT_INUSE")  # and never anything else
    call = pbx.call()
    pbx.answer(call, pbx.ring(call, "101"))
    assert board.status("101") is S.ON_CALL


def test_manager_dialling_out_is_on_a_call(pbx: Pbx, board: ManagerBoard) -> None:
    """A manager who picks up the handset and dials out is shown on a call at once."""
    pbx.new_channel("IAX2/102-4411", "4")  # picked up the handset and dialled
    assert board.status("102") is S.ON_CALL


def test_unanswered_ring_is_no_call(pbx: Pbx, board: ManagerBoard) -> None:
    """A manager who let a call ring out is free again afterwards with no wrap-up and no last
    call."""
    call = pbx.call()
    leg = pbx.ring(call, "101")
    pbx.dial_end(call, leg, "NOANSWER")
    pbx.hangup(leg)
    assert board.status("101") is S.FREE
    assert board.last_call_end("101") is None


def test_queue_member_paused_or_in_a_queue_call(pbx: Pbx, board: ManagerBoard) -> None:
    """A manager paused in any queue is shown paused until unpaused or removed from it, and one
    talking in a queue call is shown on a call."""
    pbx.member("sales", "101", Paused="1")
    pbx.member("sales-all", "101")
    assert board.status("101") is S.PAUSED  # paused in any queue
    pbx.member("sales", "101", event="QueueMemberPause", Paused="0")
    assert board.status("101") is S.FREE
    pbx.member("sales", "102", InCall="1", Status="2")
    assert board.status("102") is S.ON_CALL
    pbx.member("sales", "103", Paused="1")
    pbx.member("sales", "103", event="QueueMemberRemoved")
    assert board.status("103") is S.FREE


def test_queue_last_call_counts_for_wrapup(
    pbx: Pbx, board: ManagerBoard, clock: SecondsClock
) -> None:
    """A queue member's last call reported by the queue puts the manager in wrap-up from that
    moment."""
    pbx.member("sales", "102", LastCall=str(int(clock.now) - 10))
    assert board.status("102") is S.WRAPUP
    assert board.last_call_end("102") == int(clock.now) - 10


def test_queue_status_listing_uses_location_and_name(pbx: Pbx, board: ManagerBoard) -> None:
    """A paused member is recognised in Asterisk's QueueStatus listing, which names fields
    differently from the live events."""
    fields = member_fields("sales", "103", Paused="1")
    fields["Location"], fields["Name"] = fields.pop("Interface"), fields.pop("MemberName")
    del fields["StateInterface"]
    pbx.send("QueueMember", **fields)
    assert board.status("103") is S.PAUSED


def test_local_queue_member_with_a_hint_state_interface(board: ManagerBoard, pbx: Pbx) -> None:
    """A queue member given as a Local channel with a hint state interface (as FreePBX sets them up)
    is recognised as the manager."""
    fields = member_fields("sales", "102", Paused="1", Status="2")
    fields["Interface"], fields["StateInterface"] = "Local/102@from-queue/n", "hint:102@ext-local"
    pbx.send("QueueMemberStatus", **fields)
    assert board.status("102") is S.PAUSED


# --- several phones --------------------------------------------------------------------------


def two_phones(clock: SecondsClock) -> tuple[ManagerBoard, Pbx]:
    anna = {**MANAGERS[0], "devices": ["PJSIP/anna-desk", "PJSIP/anna-mobile"]}
    board = _board(make_settings(managers=[anna, *MANAGERS[1:]]), clock)
    return board, Pbx(board, clock)


def test_one_phone_switched_off_leaves_the_other(clock: SecondsClock) -> None:
    """A manager with a desk phone and a mobile stays available while either one is on, and is
    unavailable only when both are off."""
    board, pbx = two_phones(clock)
    pbx.device("PJSIP/anna-mobile", "UNAVAILABLE")
    pbx.device("PJSIP/anna-desk", "NOT_INUSE")
    assert board.status("101") is S.FREE
    pbx.device("PJSIP/anna-desk", "UNAVAILABLE")
    assert board.status("101") is S.UNAVAILABLE


def test_any_busy_phone_makes_the_manager_busy(clock: SecondsClock) -> None:
    """A manager talking on either of their phones is on a call, even when the other phone reports
    idle."""
    board, pbx = two_phones(clock)
    pbx.device("PJSIP/anna-desk", "NOT_INUSE")
    pbx.device("PJSIP/anna-mobile", "INUSE")
    assert board.status("101") is S.ON_CALL
    pbx.send("Newchannel", Channel="PJSIP/anna-desk-0000002a", ChannelState="6", Uniqueid="7.1")
    pbx.device("PJSIP/anna-mobile", "NOT_INUSE")
    assert board.status("101") is S.ON_CALL  # the desk phone's own live call


# --- precedence --------------------------------------------------------------------------------


def hours_board(clock: SecondsClock) -> tuple[ManagerBoard, Pbx]:
    routing = {
        "wrapup_seconds": 30,
        "groups": [{"name": "sales", "hours": ["mon-fri 09:00-18:00"]}],
    }
    board = _board(make_settings(routing), clock)
    return board, Pbx(board, clock)


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        (["unavailable", "night", "paused", "on_call"], S.UNAVAILABLE),
        (["night", "paused", "on_call", "reserved"], S.OFF_HOURS),
        (["paused", "on_call", "reserved"], S.PAUSED),
        (["on_call", "busy", "reserved"], S.ON_CALL),
        (["busy", "ringing", "reserved"], S.BUSY),
        (["ringing", "reserved", "wrapup"], S.RINGING),
        (["reserved", "wrapup"], S.RESERVED),
        (["wrapup"], S.WRAPUP),
        ([], S.FREE),
    ],
)
def test_most_restrictive_status_wins(clock: SecondsClock, facts: list[str], expected: S) -> None:
    """When several things hold at once the manager gets the most restrictive status: unavailable,
    off hours, paused, on a call, busy, ringing, reserved, wrap-up, then free."""
    board, pbx = hours_board(clock)
    setters = {
        "wrapup": lambda: pbx.talk("101", 60),
        "unavailable": lambda: pbx.hint("101", 4),
        "night": lambda: clock.advance(9 * 3600),
        "paused": lambda: pbx.member("sales", "101", Paused="1"),
        "on_call": lambda: pbx.device("IAX2/101", "INUSE"),
        "busy": lambda: pbx.hint("101", 2),
        "ringing": lambda: pbx.ring(pbx.call(), "101"),
        "reserved": lambda: board.reserve(["101"], "1795348313.99", clock.now + 25),
    }
    for fact in sorted(facts, key=lambda fact: fact != "wrapup"):  # the call first
        setters[fact]()
    assert board.status("101") is expected


# --- working hours ------------------------------------------------------------------------------


def test_hours_of_the_group_and_of_the_manager(clock: SecondsClock) -> None:
    """A manager's own working hours win over their group's, and a manager in a night group is free
    at night for that group while off hours for their home group."""
    managers = [{**MANAGERS[0], "hours": ["sat-sun 10:00-20:00"]}, *MANAGERS[1:]]
    routing = {
        "groups": [
            {"name": "sales", "hours": ["mon-fri 09:00-18:00"]},
            {"name": "night", "members": ["102"], "hours": ["daily 18:00-09:00"]},
        ]
    }
    board = _board(make_settings(routing, managers), clock)
    evening = datetime(2026, 11, 23, 19, 30, tzinfo=MOSCOW).timestamp()  # Monday
    saturday = datetime(2026, 11, 28, 11, 0, tzinfo=MOSCOW).timestamp()
    assert [board.status(e, MONDAY_NOON) for e in ("101", "102", "103")] == [
        S.OFF_HOURS,  # her own hours: weekends only
        S.FREE,
        S.FREE,
    ]
    assert board.status("102", evening) is S.OFF_HOURS  # home group: sales
    assert board.status("102", evening, group="night") is S.FREE
    assert board.status("101", saturday) is S.FREE
    assert board.status("103", saturday) is S.OFF_HOURS


@pytest.mark.parametrize(
    ("zone", "expected"),
    [
        ("Europe/Moscow", S.FREE),
        ("Asia/Vladivostok", S.OFF_HOURS),
        ("America/New_York", S.OFF_HOURS),
    ],
)
def test_hours_are_read_in_the_routing_time_zone(
    clock: SecondsClock, zone: str, expected: S
) -> None:
    # 12:00 in Moscow: 19:00 in Vladivostok, 04:00 in New York
    """Working hours are read in the routing time zone: at noon in Moscow the office is open in
    Moscow but closed for an office set to Vladivostok or New York."""
    routing = {"timezone": zone, "groups": [{"name": "sales", "hours": ["mon-fri 09:00-18:00"]}]}
    board = _board(make_settings(routing), clock)
    assert board.status("101") is expected


# --- reservations -------------------------------------------------------------------------------


def test_reservation_expires_with_time(board: ManagerBoard, clock: SecondsClock) -> None:
    """Managers offered a call stay reserved until the reservation's end (24.9 s in) and are free
    right when it runs out."""
    board.reserve(["101", "102"], "1795348313.0", until=clock.now + 25)
    assert board.status("101") is S.RESERVED
    clock.advance(24.9)
    assert board.status("102") is S.RESERVED
    clock.advance(0.1)
    assert (board.status("101"), board.status("102")) == (S.FREE, S.FREE)


def test_unanswered_dial_end_releases_that_manager_only(pbx: Pbx, board: ManagerBoard) -> None:
    """When one manager of a reserved call lets it ring out only that manager is released; the other
    stays reserved."""
    call = pbx.call()
    board.reserve(["101", "102"], call, until=pbx.clock.now + 25)
    leg = pbx.ring(call, "101")
    pbx.dial_end(call, leg, "NOANSWER")
    pbx.hangup(leg)
    assert board.status("101") is S.FREE
    assert board.status("102") is S.RESERVED


def test_dial_end_of_another_call_keeps_the_reservation(pbx: Pbx, board: ManagerBoard) -> None:
    """A manager reserved for one call stays reserved when a different call to them ends
    unanswered."""
    board.reserve(["101"], "1795348999.1", until=pbx.clock.now + 25)
    other = pbx.call()
    leg = pbx.ring(other, "101")
    pbx.dial_end(other, leg, "BUSY")
    pbx.hangup(leg)
    assert board.status("101") is S.RESERVED


def test_caller_hanging_up_releases_every_manager_of_the_call(
    pbx: Pbx, board: ManagerBoard
) -> None:
    """When the caller hangs up every manager reserved for that call is free again."""
    call = pbx.call()
    board.reserve(["101", "103"], call, until=pbx.clock.now + 25)
    pbx.hangup(call)
    assert [view.status for view in board.snapshot()] == [S.FREE, S.FREE, S.FREE]


def test_release_and_a_new_reservation(board: ManagerBoard, clock: SecondsClock) -> None:
    """A manager offered a newer call stays reserved for it when the older offer is released, and is
    free once the newer one is released too."""
    board.reserve(["101"], "a", until=clock.now + 25)
    board.reserve(["101"], "b", until=clock.now + 25)  # the newer offer wins
    board.release("a")
    assert board.status("101") is S.RESERVED
    assert board.snapshot()[0].reserved_for == "b"
    board.release("b")
    assert board.status("101") is S.FREE


# --- resync -------------------------------------------------------------------------------------


def core_show_channel(name: str, uniqueid: str, state: str, bridge: str = "") -> dict[str, str]:
    return {
        "Event": "CoreShowChannel",
        "Channel": name,
        "Uniqueid": uniqueid,
        "Linkedid": uniqueid,
        "ChannelState": state,
        "ChannelStateDesc": {"6": "Up", "5": "Ringing"}.get(state, "Ring"),
        "BridgeId": bridge,
        "Application": "AppDial",
    }


def test_resync_replaces_the_view(pbx: Pbx, board: ManagerBoard, clock: SecondsClock) -> None:
    """After the AMI link comes back the board shows what Asterisk lists now: a call that ended
    during the gap leaves the manager in wrap-up, a listed live call is on a call, a pause no longer
    listed is gone, reservations are dropped."""
    call = pbx.call()
    pbx.answer(call, pbx.ring(call, "101"))
    pbx.device("IAX2/102", "INUSE")
    pbx.member("sales", "103", Paused="1")
    board.reserve(["102"], call, until=clock.now + 60)
    clock.advance(100)  # the AMI connection was down meanwhile
    board.resync(
        channels=[core_show_channel("IAX2/102-777", "1795348500.3", "6", bridge="b-9")],
        devices=[{"Event": "DeviceStateChange", "Device": "IAX2/101", "State": "NOT_INUSE"}],
        extensions=[],
        queue_members=[],
        time=clock.now,
    )
    assert board.status("101") is S.WRAPUP  # its call ended during the gap
    assert board.last_call_end("101") == clock.now
    assert board.status("102") is S.ON_CALL  # the listed live call
    assert board.status("103") is S.FREE  # no longer paused
    assert board.snapshot()[1].reserved_for is None  # that call is gone


def test_resync_of_one_list_keeps_the_others(
    pbx: Pbx, board: ManagerBoard, clock: SecondsClock
) -> None:
    """A resync that lists only channels keeps the device and queue states known before, and a
    resync of devices replaces only those."""
    pbx.device("IAX2/101", "UNAVAILABLE")
    pbx.member("sales", "102", Paused="1")
    board.resync(channels=[], time=clock.now)
    assert (board.status("101"), board.status("102")) == (S.UNAVAILABLE, S.PAUSED)
    board.resync(devices=[], time=clock.now)
    assert board.status("101") is S.FREE


def test_resync_reads_state_lists_as_asterisk_sends_them(
    board: ManagerBoard, clock: SecondsClock
) -> None:
    """After a resync the board reads queue members, device states and extension states in the form
    Asterisk's listing actions send them."""
    listing = member_fields("sales", "101", Paused="1")
    listing["Location"], listing["Name"] = listing.pop("Interface"), listing.pop("MemberName")
    board.resync(
        devices=[{"Event": "DeviceStateChange", "Device": "IAX2/102", "State": "RINGING"}],
        extensions=[{"Event": "ExtensionStatus", "Exten": "103", "Status": "4"}],
        queue_members=[{"Event": "QueueMember", **listing}],
        time=clock.now,
    )
    assert [view.status for view in board.snapshot()] == [S.PAUSED, S.RINGING, S.UNAVAILABLE]


# --- snapshot and real traffic ----------------------------------------------------------------


def test_snapshot_for_a_wallboard(pbx: Pbx, board: ManagerBoard, clock: SecondsClock) -> None:
    """A wallboard lists each manager's name, group and status, calls today, since when in that
    status and their last call's end, and calls today start again from zero after midnight."""
    pbx.talk("102", 30)
    pbx.talk("102", 30)
    clock.advance(60)
    pbx.device("IAX2/103", "INUSE")
    views = board.snapshot()
    assert [(v.extension, v.name, v.group, v.status) for v in views] == [
        ("101", "Anna", "sales", S.FREE),
        ("102", "Boris", "sales", S.FREE),
        ("103", "Vera", "sales", S.ON_CALL),
    ]
    assert [v.calls_today for v in views] == [0, 2, 0]
    assert views[2].since == clock.now
    assert views[1].last_call_end == clock.now - 60
    next_day = datetime(2026, 11, 24, 0, 1, tzinfo=MOSCOW).timestamp()
    assert [v.calls_today for v in board.snapshot(next_day)] == [0, 0, 0]


def test_since_is_when_the_status_changed(
    pbx: Pbx, board: ManagerBoard, clock: SecondsClock
) -> None:
    """The wallboard's 'since' is when the status last changed, not when the same state was reported
    again."""
    start = clock.now
    pbx.device("IAX2/101", "RINGING")
    clock.advance(5)
    pbx.device("IAX2/101", "RINGING")  # repeated, no change
    assert board.snapshot()[0].since == start


def replay(board: ManagerBoard, name: str) -> dict[str, list[ManagerStatus]]:
    """Each manager's statuses, in order, as the trace's events come (repeats dropped)."""
    seen: dict[str, list[ManagerStatus]] = {"101": [], "102": [], "103": []}
    for event in read_capture(TRACES / f"{name}.jsonl"):
        board.feed(event)
        for extension, statuses in seen.items():
            status = board.status(extension, event.time)
            if not statuses or statuses[-1] is not status:
                statuses.append(status)
    return seen


def test_captured_ring_group_call(clock: SecondsClock) -> None:
    """In the captured ring-group call all three phones ring, the one who answers is on a call and
    then free, and the others go back to free without a last call."""
    board = _board(make_settings(), clock)
    seen = replay(board, "06_ringgroup")
    assert seen == {
        "101": [S.FREE, S.RINGING, S.FREE],
        "102": [S.FREE, S.RINGING, S.ON_CALL, S.FREE],
        "103": [S.FREE, S.RINGING, S.FREE],
    }
    assert board.last_call_end("102") is not None and board.last_call_end("101") is None


def test_captured_queue_call(clock: SecondsClock) -> None:
    """In the captured queue call the ringing manager who does not answer goes back to free, the one
    who answers is on a call then free, and the third is never disturbed."""
    board = _board(make_settings(), clock)
    seen = replay(board, "07_queue_answered")
    assert seen["101"] == [S.FREE, S.RINGING, S.FREE]
    assert seen["102"][-2:] == [S.ON_CALL, S.FREE]
    assert seen["103"] == [S.FREE]


def test_captured_concurrent_calls_end_with_everybody_free(clock: SecondsClock) -> None:
    """After the captured concurrent calls both managers who talked were on a call, everybody ends
    free, and each has one call that day."""
    board = _board(make_settings(), clock)
    seen = replay(board, "11_concurrent")
    assert S.ON_CALL in seen["101"] and S.ON_CALL in seen["102"]
    assert all(statuses[-1] is S.FREE for statuses in seen.values())
    that_day = board.last_call_end("102")
    assert [view.calls_today for view in board.snapshot(that_day)] == [1, 1, 0]


def test_asterisk_clock_ahead_of_ours_does_not_stretch_wrapup(
    board: ManagerBoard, clock: SecondsClock
) -> None:
    """Events stamped 10 minutes ahead (Asterisk's Timestamp, a skewed clock): the call
    still ends now for us, and 101 is free again after the 30 s wrap-up."""
    ahead = SecondsClock(clock.now + 600)
    skewed = Pbx(board, ahead)
    skewed.talk("101", 60)  # its hang-up reaches us now
    assert board.status("101") is S.WRAPUP
    clock.advance(31)
    assert board.status("101") is S.FREE
