"""Routing to the caller's owner in the CRM: rung alone first, within a deadline, cached."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs
from test_routing_router import CALLER, Office, answered, config, remembering

from pbx_tracker.config import ConfigError, settings_from_mapping
from pbx_tracker.crm.platform import PlatformError
from pbx_tracker.routing.owners import Finder, OwnerLookup
from pbx_tracker.routing.router import RouteDecision, Router
from pbx_tracker.routing.sticky import StickyMemory

SALES = {
    "groups": [
        {"name": "sales", "crm_owner": True, "ring_seconds": 25, "overflow": "support"},
        {"name": "support"},
    ]
}
WAIT = 5.0  # seconds a test waits for a decision at most
SECRET = "h7x2k9webhookcode"


class CrmBook:
    """A CRM that knows some callers' owners and answers at once; counts what it is asked."""

    def __init__(self, owners: dict[str, str | None] | None = None) -> None:
        self.owners = owners if owners is not None else {CALLER: "102"}
        self.asked: list[str] = []

    async def find_owner(self, phone: str) -> str | None:
        self.asked.append(phone)
        return self.owners.get(phone)


class SlowCrm(CrmBook):
    """A CRM that answers only when the test lets it."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.answered = asyncio.Event()

    async def find_owner(self, phone: str) -> str | None:
        self.asked.append(phone)
        await self.release.wait()
        self.answered.set()
        return self.owners.get(phone)


class BrokenCrm(CrmBook):
    """A CRM that fails the way a platform does, its webhook's URL in the error's text."""

    async def find_owner(self, phone: str) -> str | None:
        self.asked.append(phone)
        raise PlatformError(f"https://portal.bitrix24.ru/rest/1/{SECRET}/ answered 500")


class OwnerOffice(Office):
    """An office whose router asks the CRMs for the caller's owner."""

    def __init__(
        self,
        tmp_path: Path,
        routing: dict[str, Any],
        *finders: Finder,
        deadline: float = WAIT,
        sticky: StickyMemory | None = None,
        size: int = 10_000,
    ) -> None:
        super().__init__(routing, sticky, settings=with_crm(tmp_path, routing))
        self.owners = OwnerLookup(
            finders, deadline=deadline, cache_seconds=600, clock=self.clock, size=size
        )
        self.router = Router(self.board, sticky, self.clock, owners=self.owners)

    async def ask_soon(self, **more: Any) -> RouteDecision:
        """Ask, failing the test when the decision takes longer than `WAIT`."""
        return await asyncio.wait_for(self.ask(**more), WAIT)


def with_crm(tmp_path: Path, routing: dict[str, Any]) -> Any:
    token = tmp_path / "amocrm.token"
    token.write_text("long-lived-token\n")
    crm = {"amocrm": {"base_url": "https://example.amocrm.ru", "token_file": str(token)}}
    return settings_from_mapping({**config(routing), "crm": crm}, environ={})


# --- the owner rings first ----------------------------------------------------------------


async def test_free_owner_rings_alone_first_then_the_group(tmp_path: Path) -> None:
    """A caller whose CRM owner is free rings that owner alone for the group's ring time, then
    the group as usual without ringing the owner again."""
    crm = CrmBook()
    office = OwnerOffice(tmp_path, SALES, crm.find_owner)
    decision = await office.ask_soon()
    assert (decision.managers, decision.strategy, decision.timeout, decision.group) == (
        ("102",),
        "crm_owner",
        25,
        None,
    )
    assert decision.reason == "crm_owner: 102 owns this caller in the CRM"
    office.board.release(f"1795348313.{office.calls - 1}")  # the owner did not answer
    following = await office.ask_soon(tried=("102",), step=2)
    assert (following.managers, following.strategy, following.group) == (
        ("101",),
        "longest_idle",
        "sales",
    )
    later = await office.ask_soon(group="sales", tried=("102", "101"), step=3)
    assert later.managers == ("103",)
    assert crm.asked == [CALLER]


async def test_owner_outside_the_group_rings_first_too(tmp_path: Path) -> None:
    """A caller owned in the CRM by a support manager rings that manager first even when the
    number's group is sales."""
    office = OwnerOffice(tmp_path, SALES, CrmBook({CALLER: "201"}).find_owner)
    assert ((await office.ask_soon()).managers, office.board.status("201")) == (
        ("201",),
        "reserved",
    )


async def test_busy_owner_leaves_the_call_to_the_group(tmp_path: Path) -> None:
    """When the caller's CRM owner is busy the group's strategy takes the call at once, and the
    reason says the owner was busy."""
    office = OwnerOffice(tmp_path, SALES, CrmBook().find_owner)
    office.set("102", "busy")
    decision = await office.ask_soon()
    assert (decision.managers, decision.strategy, decision.group) == (
        ("101",),
        "longest_idle",
        "sales",
    )
    assert decision.reason.startswith("CRM owner 102 is busy; longest_idle in sales: 101")


async def test_busy_owner_then_the_last_manager(tmp_path: Path) -> None:
    """When the CRM owner is on a call, a returning caller's last manager still rings first."""
    memory = remembering(answered(CALLER, "103", days_ago=2))
    office = OwnerOffice(tmp_path, SALES, CrmBook().find_owner, sticky=memory)
    office.set("102", "on_call")
    decision = await office.ask_soon()
    assert (decision.managers, decision.strategy) == (("103",), "sticky")
    assert decision.reason.startswith("CRM owner 102 is on_call; sticky: 103 talked")


async def test_owner_who_is_no_manager_here_is_skipped(tmp_path: Path) -> None:
    """An owner the CRM names who is not a configured manager is not dialled; the group rings."""
    office = OwnerOffice(tmp_path, SALES, CrmBook({CALLER: "999"}).find_owner)
    decision = await office.ask_soon()
    assert (decision.managers, decision.strategy) == (("101",), "longest_idle")
    assert decision.reason.startswith("CRM owner 999 is no manager here; ")


async def test_first_crm_naming_an_owner_wins(tmp_path: Path) -> None:
    """With two CRMs the first that names an owner decides; one that fails or knows nobody does
    not stop the next from being asked."""
    nobody, bitrix, amo = CrmBook({}), CrmBook({CALLER: "103"}), CrmBook({CALLER: "101"})
    broken = BrokenCrm()
    finders = (broken.find_owner, nobody.find_owner, bitrix.find_owner, amo.find_owner)
    office = OwnerOffice(tmp_path, SALES, *finders)
    assert (await office.ask_soon()).managers == ("103",)
    assert (len(broken.asked), len(nobody.asked), len(bitrix.asked), amo.asked) == (1, 1, 1, [])


# --- the deadline, errors and the cache ---------------------------------------------------


async def test_slow_crm_costs_only_the_owner_ring_and_its_late_answer_is_kept(
    tmp_path: Path,
) -> None:
    """A CRM slower than the deadline leaves the call to the group at the deadline, asked once
    for calls arriving together; its late answer is kept, so the caller's next call rings the
    owner without waiting."""
    crm = SlowCrm()
    office = OwnerOffice(tmp_path, SALES, crm.find_owner, deadline=0.05)
    with capture_logs() as logs:
        first, second = await asyncio.gather(office.ask_soon(), office.ask_soon())
    assert not crm.answered.is_set()  # both decided while the CRM was still thinking
    assert {first.managers, second.managers} == {("101",), ("102",)}
    assert first.strategy == second.strategy == "longest_idle"
    assert crm.asked == [CALLER]
    assert [log["reason"] for log in logs] == ["the CRM did not answer within 50 ms"] * 2
    assert (office.owners.timeouts, office.owners.errors) == (2, 0)
    for n in range(2):
        office.board.release(f"1795348313.{n}")  # both calls ended
    crm.release.set()
    await asyncio.wait_for(crm.answered.wait(), WAIT)
    again = await office.ask_soon()
    assert (again.managers, again.strategy) == (("102",), "crm_owner")
    assert crm.asked == [CALLER]


async def test_failing_crm_falls_back_and_logs_no_secret(tmp_path: Path) -> None:
    """A CRM that fails leaves the call to the group; the log says the lookup failed without the
    webhook's code, and the next call asks the CRM again."""
    crm = BrokenCrm()
    office = OwnerOffice(tmp_path, SALES, crm.find_owner)
    with capture_logs() as logs:
        decision = await office.ask_soon()
    assert (decision.action, decision.managers) == ("dial", ("101",))
    assert logs == [
        {
            "event": "routing.crm_owner_unknown",
            "reason": "the CRM lookup failed (PlatformError)",
            "log_level": "warning",
        }
    ]
    assert SECRET not in repr(logs)
    await office.ask_soon()
    assert (len(crm.asked), office.owners.errors, office.owners.hits) == (2, 2, 0)


async def test_answers_are_kept_for_the_cache_time(tmp_path: Path) -> None:
    """A caller's owner, and a caller nobody owns, are asked of the CRM once per cache time."""
    stranger = "+79160000077"
    crm = CrmBook({CALLER: "102", stranger: None})
    office = OwnerOffice(tmp_path, SALES, crm.find_owner)
    for _ in range(2):
        for caller in (CALLER, stranger):
            await office.ask_soon(caller=caller)
            office.board.release(f"1795348313.{office.calls - 1}")
    assert crm.asked == [CALLER, stranger]
    assert (office.owners.lookups, office.owners.hits) == (4, 2)
    office.clock.advance(601)
    assert (await office.ask_soon()).strategy == "crm_owner"
    assert crm.asked == [CALLER, stranger, CALLER]


async def test_cache_keeps_only_the_newest_callers() -> None:
    """The cache holds a bounded number of callers; the oldest is asked of the CRM again."""
    crm = CrmBook({})
    lookup = OwnerLookup([crm.find_owner], size=2)
    for caller in ("+79160000001", "+79160000002", "+79160000003", "+79160000001"):
        assert await lookup.owner_of(caller) is None
    assert crm.asked.count("+79160000001") == 2
    assert await lookup.owner_of("+79160000003") is None
    assert lookup.hits == 1


async def test_owner_is_asked_only_where_it_can_apply(tmp_path: Path) -> None:
    """The CRM is not asked for a group without crm_owner, a hidden caller or a later ask."""
    crm = CrmBook()
    plain = {"groups": [{"name": "sales"}]}
    decision = await OwnerOffice(tmp_path, plain, crm.find_owner).ask_soon()
    assert decision.strategy == "longest_idle"
    office = OwnerOffice(tmp_path, SALES, crm.find_owner)
    await office.ask_soon(caller="anonymous")
    await office.ask_soon(caller=None)
    await office.ask_soon(tried=("102",), step=2)  # after the owner's ring
    await office.ask_soon(group="sales", step=2)  # within a group
    assert crm.asked == []


# --- the config ---------------------------------------------------------------------------


def test_crm_owner_needs_a_crm_that_knows_owners(tmp_path: Path) -> None:
    """A group ringing the CRM owner first without Bitrix24 or amoCRM configured is reported with
    its key; with amoCRM it loads."""
    routing = {"groups": [{"name": "support"}, {"name": "sales", "crm_owner": True}]}
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping(config(routing), environ={})
    assert caught.value.problems == [
        "routing.groups[1].crm_owner: needs crm.bitrix24 or crm.amocrm"
    ]
    settings = with_crm(tmp_path, routing)
    assert [group.crm_owner for group in settings.routing.groups] == [False, True]


async def test_a_lookup_stopped_midway_answers_nobody() -> None:
    """A CRM lookup that is stopped (a client cancelled under it) answers no owner instead of
    stopping the call's routing."""

    async def stopped(phone: str) -> str | None:
        raise asyncio.CancelledError

    lookup = OwnerLookup([stopped])
    assert await asyncio.wait_for(lookup.owner_of(CALLER), WAIT) is None
    assert lookup.errors == 1
