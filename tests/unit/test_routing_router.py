"""Whom a call rings: strategies, sticky callers, overflow, the missed-call path."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from clocks import SecondsClock

from pbx_tracker.calls.events import AmiEvent
from pbx_tracker.calls.records import CallRecord, CallStatus, Direction
from pbx_tracker.config import Settings, settings_from_mapping
from pbx_tracker.routing.availability import ManagerBoard, ManagerStatus
from pbx_tracker.routing.router import RouteDecision, Router, RouteRequest
from pbx_tracker.routing.sticky import LastTalk, StickyMemory

MOSCOW = ZoneInfo("Europe/Moscow")
MONDAY_NOON = datetime(2026, 11, 23, 12, 0, tzinfo=MOSCOW).timestamp()
YANDEX, GOOGLE, FLYER, POOL_DID = "+74951110001", "+74951110002", "+74951110003", "74951110012"
CALLER = "+79161234501"
MANAGERS = [
    {"name": "Anna", "extension": "101", "group": "sales"},
    {"name": "Boris", "extension": "102", "group": "sales"},
    {"name": "Vera", "extension": "103", "group": "sales"},
    {"name": "Gleb", "extension": "201", "group": "support"},
    {"name": "Dina", "extension": "202", "group": "support"},
]
SALES_THEN_SUPPORT = {
    "groups": [{"name": "sales", "overflow": "support"}, {"name": "support"}],
    "missed": {"action": "voicemail", "voicemail_box": "100@default"},
}


def config(routing: dict[str, Any], managers: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "ami": {"secret": "s"},
        "tracked_numbers": [
            {"did": YANDEX, "source": "yandex-direct"},
            {"did": GOOGLE, "source": "google-ads"},
            {"did": FLYER, "source": "offline-flyer"},
        ],
        "number_pools": [{"name": "site", "numbers": ["74951110010-74951110019"]}],
        "managers": MANAGERS if managers is None else managers,
        "routing": {"timezone": "Europe/Moscow", **routing},
    }


class Office:
    """A router with its board, a fixed clock, and ways to set the managers' states."""

    def __init__(
        self, routing: dict[str, Any], sticky: Any = None, settings: Settings | None = None
    ) -> None:
        self.clock = SecondsClock(MONDAY_NOON)
        self.settings = settings or settings_from_mapping(config(routing), environ={})
        self.board = ManagerBoard(self.settings.routing, self.settings.directory, self.clock)
        self.router = Router(self.board, sticky, self.clock)
        self.calls = 0

    def feed(self, event: str, **fields: str) -> None:
        self.board.feed(AmiEvent({"Event": event, **fields}, self.clock()))

    def phone(self, extension: str, state: str) -> None:
        self.feed("DeviceStateChange", Device=f"PJSIP/{extension}", State=state)

    def talked(self, extension: str, minutes_ago: float) -> None:
        """An answered call of ``extension`` ended ``minutes_ago``."""
        channel, uniqueid = f"PJSIP/{extension}-0000{self.calls:04x}", f"1795000000.{self.calls}"
        self.calls += 1
        ended = self.clock.now - minutes_ago * 60
        for event, state in (("Newchannel", "6"), ("Hangup", "6")):
            fields = {"Event": event, "Channel": channel, "Uniqueid": uniqueid}
            self.board.feed(AmiEvent({**fields, "ChannelState": state}, ended))

    def set(self, extension: str, status: str) -> None:
        """Put a manager in one of the states a call centre sees."""
        if status == "busy":
            self.phone(extension, "BUSY")
        elif status == "ringing":
            self.phone(extension, "RINGING")
        elif status == "on_call":
            self.phone(extension, "INUSE")
        elif status == "unavailable":
            self.phone(extension, "UNAVAILABLE")
        elif status == "paused":
            fields = {"Queue": "sales", "Interface": f"PJSIP/{extension}", "Paused": "1"}
            self.feed("QueueMemberPause", **fields)
        elif status == "reserved":
            self.board.reserve([extension], "1795000999.1", self.clock.now + 30)
        elif status == "wrapup":
            self.talked(extension, minutes_ago=0.1)

    async def ask(
        self, did: str = YANDEX, caller: str | None = CALLER, **more: Any
    ) -> RouteDecision:
        call_id = more.pop("call_id", f"1795348313.{self.calls}")
        self.calls += 1
        return await self.router.route(RouteRequest(did, caller, call_id, **more))


def answered(caller: str, manager: str, days_ago: float, **more: Any) -> CallRecord:
    started = datetime.fromtimestamp(MONDAY_NOON, UTC) - timedelta(days=days_ago)
    return CallRecord(
        linkedid=f"1794000000.{manager}",
        node="pbx",
        direction=more.pop("direction", Direction.INBOUND),
        did=YANDEX,
        caller=caller,
        caller_name=None,
        status=CallStatus.ANSWERED,
        missed_reason=None,
        answered_by=manager,
        transferred_to=more.pop("transferred_to", None),
        started_at=started,
        answered_at=started,
        ended_at=started + timedelta(minutes=3),
        ring_seconds=5,
        talk_seconds=175,
        recording_path=None,
    )


def remembering(*records: CallRecord) -> StickyMemory:
    memory = StickyMemory(None)
    for record in records:
        memory.remember(record)
    return memory


# --- strategies ------------------------------------------------------------------------------


async def test_longest_idle_offers_who_waited_longest_never_called_first() -> None:
    """With longest idle a new call rings a manager who has had no call yet first, then the one idle
    longest, and the reason in the log says why and how many were free."""
    office = Office({"groups": [{"name": "sales"}]})
    office.talked("101", minutes_ago=60)
    office.talked("102", minutes_ago=30)
    decision = await office.ask()
    assert decision == RouteDecision(
        action="dial",
        managers=("103",),
        dial="PJSIP/103",
        queue=None,
        timeout=20,
        group="sales",
        strategy="longest_idle",
        reason="longest_idle in sales: 103 has had no call yet (3 free)",
        source="yandex-direct",
        missed=None,
    )
    second = await office.ask()
    assert second.managers == ("101",)
    assert second.reason == "longest_idle in sales: 101 idle since 11:00 (2 free)"


async def test_ties_go_to_the_first_listed() -> None:
    """Managers who have all had no call yet are offered in the order the group lists them."""
    office = Office({"groups": [{"name": "sales", "members": ["103", "102", "101"]}]})
    assert [(await office.ask()).managers for _ in range(3)] == [("103",), ("102",), ("101",)]


@pytest.mark.parametrize(
    ("status", "offered"),
    [
        ("free", ("101", "102", "103")),
        ("busy", ("102", "103")),
        ("ringing", ("102", "103")),
        ("on_call", ("102", "103")),
        ("reserved", ("102", "103")),
        ("paused", ("102", "103")),
        ("unavailable", ("102", "103")),
        ("wrapup", ("102", "103")),
    ],
)
async def test_only_free_managers_ring(status: str, offered: tuple[str, ...]) -> None:
    """Ring all rings only the free managers: one who is busy, ringing, on a call, reserved, paused,
    unavailable or in wrap-up is left out."""
    office = Office({"wrapup_seconds": 60, "groups": [{"name": "sales", "strategy": "ring_all"}]})
    office.set("101", status)
    decision = await office.ask()
    assert decision.managers == offered
    assert decision.dial == "&".join(f"PJSIP/{ext}" for ext in offered)


async def test_off_hours_managers_do_not_ring() -> None:
    """A manager whose own hours are weekends only is not rung on a Monday."""
    managers = [{**MANAGERS[0], "hours": ["sat-sun 10:00-18:00"]}, *MANAGERS[1:]]
    routing = {"groups": [{"name": "sales", "strategy": "ring_all"}]}
    office = Office({}, settings=settings_from_mapping(config(routing, managers), environ={}))
    assert (await office.ask()).managers == ("102", "103")


async def test_round_robin_takes_turns_and_skips_who_is_not_free() -> None:
    """Round robin offers calls to the managers in turn, skipping one who is on a call, and the
    reason says who was next after whom."""
    office = Office({"groups": [{"name": "sales", "strategy": "round_robin"}]})
    offered = []
    for _ in range(4):
        decision = await office.ask()
        offered.append(decision.managers[0])
        office.board.release(f"1795348313.{office.calls - 1}")  # the call ended
    assert offered == ["101", "102", "103", "101"]
    office.set("102", "on_call")
    decision = await office.ask()
    assert decision.managers == ("103",)
    assert decision.reason == "round_robin in sales: 103 is next after 101 (2 free)"


async def test_ring_all_dials_every_phone_of_every_free_manager() -> None:
    """Ring all dials every phone of every free manager at once: a manager's own dial string, all
    their devices, else the dial template."""
    managers = [
        {**MANAGERS[0], "dial": "IAX2/101/101"},
        {**MANAGERS[1], "devices": ["PJSIP/102", "SIP/boris-mobile"]},
        MANAGERS[2],
    ]
    routing = {
        "dial_template": "SIP/{extension}",
        "groups": [{"name": "sales", "strategy": "ring_all"}],
    }
    office = Office({}, settings=settings_from_mapping(config(routing, managers), environ={}))
    decision = await office.ask()
    assert decision.dial == "IAX2/101/101&PJSIP/102&SIP/boris-mobile&SIP/103"
    assert decision.reason == "ring_all in sales: 101, 102, 103 free"


async def test_queue_group_hands_the_call_to_asterisk_then_overflows() -> None:
    """A queue group hands the call to Asterisk's queue with the group's ring time, and when the
    queue gives up the next ask goes to the overflow group's free manager."""
    routing = {
        "groups": [
            {"name": "reception", "strategy": "queue", "queue": "reception", "ring_seconds": 60,
             "overflow": "sales"},
            {"name": "sales"},
        ]
    }  # fmt: skip
    office = Office(routing)
    for extension in ("101", "102", "103"):
        office.set(extension, "on_call")  # the queue checks its members itself
    decision = await office.ask()
    assert (decision.action, decision.queue, decision.timeout, decision.dial) == (
        "queue",
        "reception",
        60,
        "",
    )
    assert (decision.managers, decision.group, decision.strategy) == ((), "reception", "queue")
    office.phone("102", "NOT_INUSE")
    later = await office.ask(group="reception", step=2)
    assert later.managers == ("102",)
    assert later.reason.startswith("queue reception of reception was tried; longest_idle in sales")


# --- overflow, later asks, the missed-call path -----------------------------------------------


async def test_nobody_free_overflows_to_the_next_group() -> None:
    """When nobody in sales is free the call goes to the support group, and the reason lists why
    each sales manager was not free."""
    office = Office(SALES_THEN_SUPPORT)
    office.set("101", "on_call")
    office.set("102", "paused")
    office.set("103", "unavailable")
    decision = await office.ask()
    assert (decision.managers, decision.group) == (("201",), "support")
    assert decision.reason == (
        "nobody free in sales (101 on_call, 102 paused, 103 unavailable); "
        "longest_idle in support: 201 has had no call yet (2 free)"
    )


async def test_later_asks_go_through_the_group_then_overflow_then_missed() -> None:
    """A call nobody answers rings each sales manager in turn, then each support manager, then takes
    the missed-call path."""
    office = Office(SALES_THEN_SUPPORT)
    tried: tuple[str, ...] = ()
    group, offered = None, []
    for step in range(1, 6):
        decision = await office.ask(group=group, tried=tried, step=step)
        offered.append(decision.managers)
        group, tried = decision.group, (*tried, *decision.managers)
        office.board.release(f"1795348313.{office.calls - 1}")  # nobody answered
    assert offered == [("101",), ("102",), ("103",), ("201",), ("202",)]
    last = await office.ask(group=group, tried=tried, step=6)
    assert last.action == "missed"


async def test_missed_call_path_when_nobody_is_free() -> None:
    """When every manager of the group and its overflow is on a call the caller goes to the
    configured voicemail box, with a reason listing everyone's status."""
    office = Office(SALES_THEN_SUPPORT)
    for extension in ("101", "102", "103", "201", "202"):
        office.set(extension, "on_call")
    decision = await office.ask(did=GOOGLE)
    assert (decision.action, decision.managers, decision.dial, decision.timeout) == (
        "missed",
        (),
        "",
        0,
    )
    assert (decision.strategy, decision.group, decision.source) == ("missed", None, "google-ads")
    assert decision.missed is not None and decision.missed.voicemail_box == "100@default"
    assert decision.reason == (
        "nobody free in sales (101 on_call, 102 on_call, 103 on_call), "
        "support (201 on_call, 202 on_call); missed-call path: voicemail"
    )


async def test_too_many_asks_end_in_the_missed_call_path() -> None:
    """A call asked about more times than max_steps takes the missed-call path, saying so."""
    office = Office({"max_steps": 2})
    decision = await office.ask(step=3, group="all")
    assert decision.action == "missed"
    assert decision.reason == "step 3 is over max_steps (2); missed-call path: message"


async def test_an_overflow_cycle_in_a_config_built_in_code_still_ends() -> None:
    """Even groups that overflow into each other in a circle end in the missed-call path rather than
    looping forever."""
    data = config({"groups": [{"name": "sales", "overflow": "support"},
                              {"name": "support", "overflow": "sales"}]})  # fmt: skip
    office = Office({}, settings=Settings.model_validate(data))  # no cross-entry checks
    for extension in ("101", "102", "103", "201", "202"):
        office.set(extension, "busy")
    assert (await office.ask()).action == "missed"


async def test_without_groups_every_manager_is_in_one() -> None:
    """Without groups every manager is in one group named all, and a call on an untracked number
    still rings someone."""
    office = Office({})
    decision = await office.ask(did="+74959999999")  # not tracked
    assert (decision.group, decision.managers, decision.source) == ("all", ("101",), None)


async def test_without_managers_every_call_is_missed() -> None:
    """With no managers configured every call takes the missed-call path, and the reason says the
    group has no members."""
    settings = settings_from_mapping(config({}, managers=[]), environ={})
    decision = await Office({}, settings=settings).ask()
    assert decision.reason == "nobody free in all (no members); missed-call path: message"


@pytest.mark.parametrize(
    ("did", "group"),
    [
        (FLYER, "support"),  # its own rule
        ("8 (495) 111-00-03", "support"),  # as the carrier may write it
        (POOL_DID, "night"),  # the pool's rule
        (GOOGLE, "backoffice"),  # its source's rule
        (YANDEX, "sales"),  # no rule: the default group
        ("+74959999999", "sales"),  # not tracked
    ],
)
async def test_number_rules_choose_the_group(did: str, group: str) -> None:
    """The dialled number picks the group by its own rule (however the carrier writes it), its
    pool's rule or its source's rule, else the default group."""
    routing = {
        "default_group": "sales",
        "groups": [
            {"name": "support"},
            {"name": "sales"},
            {"name": "night", "members": ["101"]},
            {"name": "backoffice", "members": ["103"]},
        ],
        "numbers": [
            {"did": FLYER, "group": "support"},
            {"pool": "site", "group": "night"},
            {"source": "google-ads", "group": "backoffice"},
        ],
    }
    assert (await Office(routing).ask(did=did)).group == group


# --- sticky -----------------------------------------------------------------------------------


async def test_returning_caller_rings_their_last_manager_alone_first() -> None:
    """A caller who talked with a manager three days ago rings that manager alone first for 15 s,
    then the group as usual."""
    office = Office(SALES_THEN_SUPPORT, remembering(answered(CALLER, "102", days_ago=3)))
    decision = await office.ask()
    assert (decision.managers, decision.strategy, decision.timeout, decision.group) == (
        ("102",),
        "sticky",
        15,
        None,
    )
    assert decision.reason == "sticky: 102 talked with this caller on 2026-11-20"
    office.board.release(f"1795348313.{office.calls - 1}")
    following = await office.ask(tried=("102",), step=2)
    assert (following.managers, following.strategy, following.group) == (
        ("101",),
        "longest_idle",
        "sales",
    )


async def test_sticky_manager_may_be_outside_the_group_and_transfers_count() -> None:
    """A returning caller rings the manager they were last transferred to, even one outside the
    number's group."""
    record = answered(CALLER, "101", days_ago=1, transferred_to="202")
    decision = await Office(SALES_THEN_SUPPORT, remembering(record)).ask()
    assert (decision.managers, decision.strategy) == (("202",), "sticky")


async def test_callback_the_customer_picked_up_makes_them_sticky_too() -> None:
    """A customer who last picked up a manager's callback rings that manager first when they call
    again."""
    memory = remembering(
        answered(CALLER, "101", days_ago=5),
        answered(CALLER, "103", days_ago=2, direction=Direction.OUTBOUND),
    )
    assert (await Office(SALES_THEN_SUPPORT, memory).ask()).managers == ("103",)


async def test_sticky_manager_not_free_leaves_the_call_to_the_group() -> None:
    """When a returning caller's last manager is on a call the group takes the call at once, and the
    reason says why."""
    office = Office(SALES_THEN_SUPPORT, remembering(answered(CALLER, "102", days_ago=3)))
    office.set("102", "on_call")
    decision = await office.ask()
    assert (decision.managers, decision.strategy) == (("101",), "longest_idle")
    assert decision.reason.startswith("last manager 102 is on_call; longest_idle in sales")


@pytest.mark.parametrize(
    ("caller", "days_ago", "sticky_days", "sticky"),
    [
        (CALLER, 29, 30, True),
        (CALLER, 31, 30, False),  # too long ago
        (CALLER, 1, 0, False),  # sticky routing off
        ("+79160000000", 1, 30, False),  # a new caller
        ("anonymous", 1, 30, False),
        ("", 1, 30, False),
        ("unknown", 1, 30, False),
        (None, 1, 30, False),
    ],
)
async def test_who_gets_sticky_routing(
    caller: str | None, days_ago: float, sticky_days: int, sticky: bool
) -> None:
    """Only a known caller who talked with a manager within the group's sticky days rings that
    manager first; new, hidden and anonymous callers or sticky days of 0 go to the group."""
    memory = remembering(*(answered(c, "103", days_ago) for c in (CALLER, "anonymous", "")))
    routing = {"groups": [{"name": "sales", "sticky_days": sticky_days}]}
    decision = await Office(routing, memory).ask(caller=caller)
    assert (decision.strategy == "sticky") is sticky
    assert decision.managers == (("103",) if sticky else ("101",))


async def test_sticky_lookup_is_not_made_when_it_cannot_apply() -> None:
    """The call history is not looked up when sticky routing cannot apply (switched off, a hidden
    caller, a later step), saving a database query per call."""

    class Counting:
        asked = 0

        async def last_manager(self, caller: str, since: datetime) -> LastTalk | None:
            Counting.asked += 1
            return None

    await Office({"groups": [{"name": "sales", "sticky_days": 0}]}, Counting()).ask()
    office = Office(SALES_THEN_SUPPORT, Counting())
    await office.ask(caller="anonymous")
    await office.ask(tried=("101",), step=2)  # after the sticky ring
    await office.ask(group="sales", step=2)  # within a group
    assert Counting.asked == 0
    await office.ask()
    assert Counting.asked == 1


async def test_failing_history_never_stops_the_call() -> None:
    """When the call history cannot be read the call still rings the group."""

    class Broken:
        async def last_manager(self, caller: str, since: datetime) -> LastTalk | None:
            raise RuntimeError("database on fire")

    decision = await Office(SALES_THEN_SUPPORT, Broken()).ask()
    assert (decision.action, decision.managers) == ("dial", ("101",))


# --- reservations and calls at the same time --------------------------------------------------


async def test_offered_manager_is_reserved_for_ring_time_plus_reservation() -> None:
    """A manager offered a call is reserved for that call for its ring time plus the reservation, so
    the next call rings someone else, and is free afterwards."""
    office = Office({"reservation_seconds": 5, "groups": [{"name": "sales", "ring_seconds": 20}]})
    decision = await office.ask(call_id="1795348313.0")
    assert office.board.status("101") is ManagerStatus.RESERVED
    assert office.board.snapshot()[0].reserved_for == "1795348313.0"
    assert (await office.ask()).managers == ("102",)
    office.clock.advance(25)
    assert office.board.status("101") is ManagerStatus.FREE
    assert decision.managers == ("101",)


async def test_calls_arriving_together_never_get_the_same_manager() -> None:
    """Calls arriving at the same moment each ring a different manager, and one more call when all
    are taken is missed."""

    class SlowHistory:
        """The database answers only after every call has asked."""

        def __init__(self) -> None:
            self.waiting = 0
            self.all_asked = asyncio.Event()

        async def last_manager(self, caller: str, since: datetime) -> LastTalk | None:
            self.waiting += 1
            if self.waiting == 4:
                self.all_asked.set()
            await self.all_asked.wait()
            return None

    office = Office(SALES_THEN_SUPPORT, SlowHistory())
    office.set("202", "on_call")
    callers = [f"+7916000000{n}" for n in range(1, 5)]
    decisions = await asyncio.gather(*(office.ask(caller=c) for c in callers))
    assert sorted(d.managers[0] for d in decisions) == ["101", "102", "103", "201"]
    last = await office.ask(caller="+79160000009")
    assert last.action == "missed"


async def test_two_sticky_callers_of_one_manager_do_not_both_get_them() -> None:
    """Two returning callers of one manager arriving together: the first rings that manager, the
    second goes to the group, and the reason says the manager was reserved."""
    memory = remembering(answered(CALLER, "102", 1), answered("+79160000002", "102", 2))
    office = Office(SALES_THEN_SUPPORT, memory)
    first, second = await asyncio.gather(office.ask(), office.ask(caller="+79160000002"))
    assert (first.managers, first.strategy) == (("102",), "sticky")
    assert (second.managers, second.strategy) == (("101",), "longest_idle")
    assert second.reason.startswith("last manager 102 is reserved")


async def test_same_state_gives_the_same_decision() -> None:
    """The same managers' states and history always give the same routing decision."""
    decisions = []
    for _ in range(2):
        office = Office(SALES_THEN_SUPPORT)
        office.talked("103", 10)
        office.set("101", "on_call")
        decisions.append(await office.ask(call_id="1795348313.0"))
    assert decisions[0] == decisions[1]
