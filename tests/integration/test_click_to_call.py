"""Click-to-call from Bitrix24 over the real protocols: Bitrix24's ``ONEXTERNALCALLSTART``
POSTed to the daemon's HTTP app, the RingMe Originate sent over AMI to FakeAsterisk.

The app is the daemon's (`make_app`, its middleware) with `add_crm_event_routes`; the
event is posted as Bitrix24 posts it (`tests/bitrix24_events.py`); AmiListener is logged
in to the simulated Asterisk on loopback, whose callback events go through RingMe and the
correlator as in the daemon.  Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field, replace

import pytest
from ami_settings import ListenerSettings, resynced_listener
from bitrix24_events import Click, call_start, event_form, post_event
from clocks import SecondsClock
from pydantic import SecretStr
from servers import serving_app
from structlog.testing import capture_logs

from pbx_tracker.ami.connection import AmiListener
from pbx_tracker.attribution.visit_pool import NoPools
from pbx_tracker.callbacks.ringme import RingMe, RingMeResult
from pbx_tracker.callbacks.settings import RingMeSettings
from pbx_tracker.calls.correlator import Correlator
from pbx_tracker.calls.events import AmiEvent
from pbx_tracker.calls.records import CallRecord, Direction
from pbx_tracker.config import load_settings
from pbx_tracker.crm.click_to_call import ClickToCall
from pbx_tracker.replay import topology_of
from pbx_tracker.sim.asterisk import FakeAsterisk
from pbx_tracker.staff import Directory, Manager, NumberLabels
from pbx_tracker.web.app import make_app
from pbx_tracker.web.pages.crm_events import BITRIX24_EVENTS, MAX_EVENT_BYTES, add_crm_event_routes
from pbx_tracker.web.settings import HttpSettings
from traces import TRACE_CONFIG

USER = "tracker"
SECRET = "click-to-call-ami-5e"
TOKEN = "51610fefc120afa4b628cc82d6298cce"
WAIT = 5.0
CALL_ID = "externalCall.89350264e026dace3f2b14d1f438257c.1773236989"
CLICK = Click(user_id=1269, phone_number="+7 916 123-45-03", call_id=CALL_ID, line_number="")
TRACKED_LINE = "+74951110002"
MANAGERS = [
    Manager(name="Anna", extension="101", bitrix24_user=1269),
    Manager(name="Boris", extension="102", bitrix24_user=1270),
]

AmiSettings = functools.partial(ListenerSettings, SecretStr(SECRET))


@dataclass
class Rig:
    """Simulated Asterisk, a listener and RingMe on it, click-to-call served over HTTP."""

    asterisk: FakeAsterisk
    listener: AmiListener
    ringme: RingMe
    click_to_call: ClickToCall
    port: int
    correlator: Correlator
    records: list[CallRecord] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{BITRIX24_EVENTS}"

    def originates(self) -> list[dict[str, str]]:
        return self.asterisk.actions_named("Originate")

    async def click(self, click: Click = CLICK, token: str | None = TOKEN) -> tuple[int, object]:
        """The click told by Bitrix24; its answer once the Originate it started was sent."""
        status, answer = await post_event(self.url, call_start(click, token))
        await asyncio.wait_for(self.click_to_call.settle(), WAIT)
        return status, answer.get("result", answer.get("error"))

    async def result(self) -> RingMeResult:
        """AMI events until RingMe reports an attempt's result (the correlator fed too)."""
        while True:
            item = await asyncio.wait_for(self.listener.events.get(), WAIT)
            if isinstance(item, AmiEvent):
                self.records += self.correlator.feed(item)
                if (result := self.ringme.feed(item)) is not None:
                    return result

    async def call_ends(self) -> list[CallRecord]:
        while self.correlator.calls_in_progress:
            item = await asyncio.wait_for(self.listener.events.get(), WAIT)
            if isinstance(item, AmiEvent):
                self.records += self.correlator.feed(item)
        return self.records


def directory() -> Directory:
    line = NumberLabels(TRACKED_LINE, "bitrix24", None, None, None)
    return Directory(MANAGERS, [line], region="RU")


@contextlib.asynccontextmanager
async def rig_for(*, configured: bool = True, **fake: object) -> AsyncIterator[Rig]:
    tracker = load_settings(TRACE_CONFIG, environ={})
    async with FakeAsterisk(username=USER, secret=SECRET, timestamp_events=True) as asterisk:
        for key, value in fake.items():
            setattr(asterisk, key, value)
        async with resynced_listener(AmiSettings(port=asterisk.port), WAIT) as listener:

            async def send(action: Mapping[str, str], timeout: float) -> object:  # noqa: ASYNC109
                return await listener.send_action(action, timeout=timeout)

            settings = RingMeSettings.model_validate({"context": "callback"})
            ringme = RingMe(send, settings, region="RU", clock=SecondsClock())
            click_to_call = ClickToCall(
                SecretStr(TOKEN), directory(), ringme, dial=lambda ext: f"IAX2/{ext}/{ext}"
            )
            app = make_app(HttpSettings(port=0), NoPools())
            add_crm_event_routes(app, click_to_call if configured else None)
            async with serving_app(app) as port:
                yield Rig(
                    asterisk,
                    listener,
                    ringme,
                    click_to_call,
                    port,
                    Correlator(topology_of(tracker)),
                )


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    async with rig_for() as ready:
        yield ready


# -- a click rings the manager, then the customer ---------------------------------------


async def test_a_click_in_bitrix24_rings_the_managers_phone_then_the_customer(rig: Rig) -> None:
    """A manager who clicks a number in Bitrix24 gets their phone rung, then the customer's, in
    one Originate that names Bitrix24's call and no callback task."""
    assert await rig.click() == (200, "ringing")
    (sent,) = rig.originates()
    assert sent["Channel"] == "IAX2/101/101"
    assert (sent["Context"], sent["Exten"]) == ("callback", "79161234503")
    assert sent["CallerID"] == '"Callback" <79161234503>'
    variables = dict(pair.split("=", 1) for pair in sent["Variable"].split(","))
    assert variables["CALLBACK_CRM_CALL_ID"] == CALL_ID
    assert "CALLBACK_TASK" not in variables
    assert variables["CALLBACK_ATTEMPT"] == "1"
    assert rig.ringme.in_flight(f"crm:{CALL_ID}")


async def test_the_callback_record_carries_bitrix24s_call(rig: Rig) -> None:
    """Once the manager and the customer answered, the outbound call's record keeps Bitrix24's
    call id, so the call can be told back to the call Bitrix24 registered."""
    await rig.click()
    result = await rig.result()
    assert (result.task_id, result.crm_call_id, result.outcome) == (None, CALL_ID, "answered")
    (record,) = await rig.call_ends()
    assert record.direction is Direction.OUTBOUND
    assert (record.caller, record.answered_by) == ("79161234503", "101")
    assert record.variables["CALLBACK_CRM_CALL_ID"] == CALL_ID
    assert "CALLBACK_TASK" not in record.variables


async def test_the_customer_sees_the_tracked_line_the_click_went_out_on(rig: Rig) -> None:
    """A click sent through a Bitrix24 line that is one of our tracked numbers shows that
    number to the customer; each manager's own phone rings."""
    await rig.click(replace(CLICK, user_id=1270, line_number=TRACKED_LINE))
    (sent,) = rig.originates()
    assert sent["Channel"] == "IAX2/102/102"
    assert "CALLBACK_DID=74951110002," in sent["Variable"]


# -- told again ------------------------------------------------------------------------


async def test_the_same_click_told_twice_rings_once(rig: Rig) -> None:
    """Bitrix24 telling the same click again while the first call is ringing is answered 200 and
    places no second call."""
    assert await rig.click() == (200, "ringing")
    with capture_logs() as logs:
        assert await rig.click() == (200, "ringing")
    assert len(rig.originates()) == 1
    (told,) = [e for e in logs if e["event"] == "crm.click_to_call_not_dialled"]
    assert told["crm_call"] == CALL_ID and "still in flight" in told["reason"]


async def test_the_same_click_after_its_call_is_over_is_not_dialled_again(rig: Rig) -> None:
    """A click told again after its call is over does not ring anyone again: one Bitrix24 call,
    one Originate."""
    await rig.click()
    await rig.result()
    await rig.click()
    assert len(rig.originates()) == 1


async def test_two_clicks_at_once_ring_once(rig: Rig) -> None:
    """The same click told twice at the same moment places one call."""
    form = call_start(CLICK, TOKEN)
    answers = await asyncio.gather(post_event(rig.url, form), post_event(rig.url, form))
    await asyncio.wait_for(rig.click_to_call.settle(), WAIT)
    assert [status for status, _ in answers] == [200, 200]
    assert len(rig.originates()) == 1


async def test_a_new_click_on_the_same_number_rings_again(rig: Rig) -> None:
    """A second click (Bitrix24 registers a new call for it) rings again once the first call is
    over."""
    await rig.click()
    await rig.result()
    await rig.click(replace(CLICK, call_id="externalCall.0cd02f0bc9dd180dfd355522b0fde568.1"))
    assert len(rig.originates()) == 2


# -- refused ---------------------------------------------------------------------------


@pytest.mark.parametrize("token", ["0" * len(TOKEN), TOKEN[:-1], "", None])
async def test_a_wrong_or_missing_token_is_403_and_rings_nobody(
    rig: Rig, token: str | None
) -> None:
    """An event without Bitrix24's application token, or with another, is refused with 403, no
    call is placed and the log shows no token."""
    with capture_logs() as logs:
        assert await rig.click(token=token) == (403, "wrong application token")
    assert rig.originates() == []
    (refused,) = [e for e in logs if e["event"] == "crm.click_to_call_forbidden"]
    assert refused["client"] == "127.0.0.1"
    assert TOKEN not in repr(logs) and (not token or token not in repr(logs))


async def test_a_bitrix24_user_who_is_no_manager_rings_nobody(rig: Rig) -> None:
    """A click by a Bitrix24 user no manager is mapped to is answered 200 (Bitrix24 need not send
    it again), places no call and is logged."""
    with capture_logs() as logs:
        assert await rig.click(replace(CLICK, user_id=99)) == (200, "ignored")
    assert rig.originates() == []
    (warning,) = [e for e in logs if e["event"] == "crm.click_to_call_unknown_user"]
    assert (warning["bitrix24_user"], warning["log_level"]) == (99, "warning")


@pytest.mark.parametrize("number", ["", "anonymous", "101", "not a number", "+7" + "9" * 80])
async def test_a_number_that_cannot_be_dialled_rings_nobody(rig: Rig, number: str) -> None:
    """A click on a hidden, internal or garbled number places no call and is logged."""
    with capture_logs() as logs:
        assert await rig.click(replace(CLICK, phone_number=number)) == (200, "ignored")
    assert rig.originates() == []
    assert [e["crm_call"] for e in logs if e["event"] == "crm.click_to_call_undialable"] == [
        CALL_ID
    ]


async def test_another_event_is_answered_and_ignored(rig: Rig) -> None:
    """Another Bitrix24 event sent to the address is answered 200 and does nothing."""
    form = event_form("ONEXTERNALCALLBACKSTART", {"PHONE_NUMBER": "+79161234503"}, TOKEN)
    status, answer = await post_event(rig.url, form)
    assert (status, answer) == (200, {"result": "ignored"})
    assert rig.originates() == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"CALL_ID": "a,CALLBACK_TASK=1"}, "data[CALL_ID]"),
        ({"CALL_ID": "x\r\nAction: Hangup"}, "data[CALL_ID]"),
        ({"USER_ID": "-1"}, "data[USER_ID]"),
        ({"USER_ID": "1e3"}, "data[USER_ID]"),
    ],
)
async def test_a_malformed_event_rings_nobody(rig: Rig, change: dict[str, str], field: str) -> None:
    """A rightly signed event whose call or user id cannot be what Bitrix24 sends places no call
    and is logged by the field."""
    form = event_form("ONEXTERNALCALLSTART", {**CLICK.data(), **change}, TOKEN)
    with capture_logs() as logs:
        status, answer = await post_event(rig.url, form)
    assert (status, answer) == (200, {"result": "ignored"})
    assert rig.originates() == []
    assert [e["field"] for e in logs if e["event"] == "crm.click_to_call_malformed"] == [field]


async def test_what_is_no_bitrix24_form_is_refused(rig: Rig) -> None:
    """JSON, an oversized body, a repeated field and bytes that are not UTF-8 are refused before
    the token is even looked at."""
    form = call_start(CLICK, TOKEN)
    assert (await post_event(rig.url, b"{}", content_type="application/json"))[0] == 415
    assert (await post_event(rig.url, [*form, ("pad", "x" * MAX_EVENT_BYTES)]))[0] == 413
    assert (await post_event(rig.url, [*form, ("auth[application_token]", "x")]))[0] == 400
    assert (await post_event(rig.url, b"event=\xff"))[0] == 400
    assert rig.originates() == []


async def test_without_click_to_call_configured_the_address_is_404() -> None:
    """With no application token configured the address answers 404 and rings nobody."""
    async with rig_for(configured=False) as rig:
        status, _ = await post_event(rig.url, call_start(CLICK, TOKEN))
        assert status == 404
        assert rig.originates() == []
