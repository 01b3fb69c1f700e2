"""Click-to-call's rules without a network: reading Bitrix24's form, and RingMe's bookkeeping
of calls a CRM asked for (a scripted AMI answer stands in for Asterisk, as in
tests/unit/test_ringme_logic.py).  The HTTP and AMI path is tests/integration/test_click_to_call.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlencode

import pytest
from bitrix24_events import Click, call_start
from clocks import SecondsClock
from structlog.testing import capture_logs

from pbx_tracker.callbacks.ringme import CRM_MEMORY, RingMe, RingMeCall, RingMeRefused
from pbx_tracker.callbacks.settings import RingMeSettings
from pbx_tracker.calls.events import AmiEvent
from pbx_tracker.crm.click_to_call import MAX_FIELDS, BadForm, ClickToCall, read_form
from pbx_tracker.crm.settings import Bitrix24Settings
from pbx_tracker.staff import Directory

CALL_ID = "externalCall.cf1649fa0f4479870b76a0686f4a7058.1524129147"
CRM_CALL = RingMeCall(
    task_id=None,
    manager="101",
    manager_dial="PJSIP/101",
    customer="+79161234567",
    did=None,
    crm_call_id=CALL_ID,
)
QUEUED = {"Response": "Success", "ActionID": "x", "Message": "Originate successfully queued"}


class Ami:
    """`send_action` stand-in: records the actions and answers "queued"."""

    def __init__(self) -> None:
        self.actions: list[dict[str, str]] = []

    async def __call__(self, action: Mapping[str, str], timeout: float) -> object:  # noqa: ASYNC109
        self.actions.append(dict(action))
        return [AmiEvent(dict(QUEUED), 0.0)]


def make(**settings: object) -> tuple[RingMe, Ami, SecondsClock]:
    ami, clock = Ami(), SecondsClock(500.0)
    ringme = RingMe(ami, RingMeSettings.model_validate(settings), region="RU", clock=clock)
    return ringme, ami, clock


def response(action_id: str, outcome: str = "Failure", reason: str = "3") -> AmiEvent:
    fields = {"Event": "OriginateResponse", "ActionID": action_id, "Response": outcome}
    return AmiEvent({**fields, "Reason": reason}, 0.0)


# -- the form --------------------------------------------------------------------------


def test_bitrix24s_form_reads_back_field_by_field() -> None:
    """The event as Bitrix24 encodes it reads back with its nested names and values."""
    click = Click(user_id=7, phone_number="8 (916) 123-45-67", call_id=CALL_ID)
    form = read_form(urlencode(call_start(click, "tok&en=")).encode())
    assert form["event"] == "ONEXTERNALCALLSTART"
    assert form["data[PHONE_NUMBER]"] == "8 (916) 123-45-67"
    assert (form["data[USER_ID]"], form["data[CALL_ID]"]) == ("7", CALL_ID)
    assert form["auth[application_token]"] == "tok&en="


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"a=1&a=2", "twice"),
        (b"x=%FF", "UTF-8"),
        (b"\xff=1", "UTF-8"),
        ("&".join(f"f{i}=1" for i in range(MAX_FIELDS + 1)).encode(), "fields"),
    ],
)
def test_a_body_no_bitrix24_would_send_is_refused(body: bytes, reason: str) -> None:
    """Repeated fields, bytes that are not UTF-8 and too many fields are refused, saying which
    rule and showing none of the values."""
    with pytest.raises(BadForm, match=reason) as refused:
        read_form(body)
    assert "2" not in str(refused.value) and "%FF" not in str(refused.value)


# -- RingMe for a CRM's call -----------------------------------------------------------


def test_a_ring_me_call_is_for_a_task_or_for_a_crm_call() -> None:
    """A ring-me call names a callback task or a CRM call, never both nor neither."""
    with pytest.raises(ValueError, match="task or for a CRM call"):
        RingMeCall(None, "101", "PJSIP/101", "+79161234567", None)
    with pytest.raises(ValueError, match="task or for a CRM call"):
        RingMeCall(1, "101", "PJSIP/101", "+79161234567", None, crm_call_id=CALL_ID)
    assert (CRM_CALL.key, CRM_CALL.named) == (f"crm:{CALL_ID}", f"CRM call {CALL_ID}")


async def test_a_crm_call_is_dialled_once_and_refused_readably_after() -> None:
    """A CRM call gets one Originate, named by its call id and by no task; telling it again,
    even once it is over, is refused saying so."""
    ringme, ami, _ = make(max_attempts=3)
    action_id = await ringme.start(CRM_CALL)
    assert action_id.startswith("ringme-crm-1-")
    (action,) = ami.actions
    assert action["Variable"].startswith(f"CALLBACK_CRM_CALL_ID={CALL_ID},CALLBACK_ATTEMPT=1,")
    assert "CALLBACK_TASK" not in action["Variable"]
    with pytest.raises(RingMeRefused, match="still in flight") as refused:
        await ringme.start(CRM_CALL)
    assert str(refused.value).startswith(f"ring me for CRM call {CALL_ID} refused: ")
    assert (refused.value.task_id, refused.value.crm_call_id) == (None, CALL_ID)
    result = ringme.feed(response(action_id))
    assert result is not None and (result.task_id, result.crm_call_id) == (None, CALL_ID)
    with pytest.raises(RingMeRefused, match="dialled already"):
        await ringme.start(CRM_CALL)
    assert len(ami.actions) == 1 and ringme.attempts(CRM_CALL.key) == 1


async def test_a_crm_call_is_forgotten_an_hour_after_it_ended() -> None:
    """What RingMe keeps of CRM calls does not grow for ever: an hour after the call, it is
    forgotten (the same call id could then ring again)."""
    ringme, ami, clock = make()
    action_id = await ringme.start(CRM_CALL)
    ringme.feed(response(action_id))
    clock.advance(20 + 10 + 30 + CRM_MEMORY + 1)
    other = RingMeCall(None, "102", "PJSIP/102", "+79161234568", None, crm_call_id="other.1")
    await ringme.start(other)
    assert ringme.attempts(CRM_CALL.key) == 0 and ringme.attempts(other.key) == 1
    assert len(ami.actions) == 2


@pytest.mark.parametrize("call_id", ["a,CALLBACK_TASK=1", "x\r\nAction: Hangup", "", "." * 3])
async def test_a_crm_call_id_asterisk_cannot_be_given_is_refused(call_id: str) -> None:
    """A CRM call id that would break the Originate's variables or headers is refused before
    anything is sent, and the refusal does not repeat it."""
    ringme, ami, _ = make()
    call = RingMeCall(None, "101", "PJSIP/101", "+79161234567", None, crm_call_id=call_id)
    with capture_logs() as logs, pytest.raises(RingMeRefused, match="call id") as refused:
        await ringme.start(call)
    assert ami.actions == []
    assert "malformed id" in str(refused.value)
    assert call_id not in repr(logs) or not call_id


async def test_a_task_and_a_crm_call_for_the_same_customer_do_not_block_each_other() -> None:
    """A callback task's attempt in flight does not stop a CRM click on the same customer."""
    ringme, ami, _ = make()
    await ringme.start(RingMeCall(5, "101", "PJSIP/101", "+79161234567", None))
    await ringme.start(CRM_CALL)
    assert len(ami.actions) == 2
    assert ringme.in_flight(5) and ringme.in_flight(CRM_CALL.key)


# -- configured or not ------------------------------------------------------------------


def test_click_to_call_is_off_without_a_token_or_without_ring_me(tmp_path: Path) -> None:
    """Click-to-call is on only with the webhook's application token and ring me; a token
    without ring me is logged."""
    url, token = tmp_path / "url", tmp_path / "token"
    url.write_text("https://portal.bitrix24.ru/rest/1/code/\n")
    token.write_text("51610fefc120afa4b628cc82d6298cce\n")
    without = Bitrix24Settings.model_validate({"webhook_url_file": str(url)})
    with_token = Bitrix24Settings.model_validate(
        {"webhook_url_file": str(url), "application_token_file": str(token)}
    )
    ringme, _, _ = make()
    directory, dial = Directory(), (lambda ext: f"PJSIP/{ext}")
    assert ClickToCall.from_settings(None, directory, ringme, dial=dial) is None
    assert ClickToCall.from_settings(without, directory, ringme, dial=dial) is None
    assert ClickToCall.from_settings(with_token, directory, ringme, dial=dial) is not None
    with capture_logs() as logs:
        assert ClickToCall.from_settings(with_token, directory, None, dial=dial) is None
    assert [e["event"] for e in logs] == ["crm.click_to_call_off"]
