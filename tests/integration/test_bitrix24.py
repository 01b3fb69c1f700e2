"""Bitrix24's telephony driven through the outbox's events against a loopback portal
(tests/bitrix24_server.py) over real HTTP."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from bitrix24_server import CODE, Bitrix24Portal, PortalCall, serving
from platform_links import DictLinks
from structlog.testing import capture_logs

from pbx_tracker.calls.records import (
    CallRecord,
    CallStatus,
    Direction,
    MissedReason,
    RingAttempt,
)
from pbx_tracker.crm.bitrix24 import Bitrix24Platform
from pbx_tracker.crm.platform import OutboxEvent, PlatformError
from pbx_tracker.crm.settings import Bitrix24Settings
from pbx_tracker.staff import Directory, Manager

NODE, LINKEDID = "pbx1", "1715670000.42"
KEY = f"{NODE}:{LINKEDID}"
CALLER, DID = "+79161234567", "+74951110002"
STARTED = datetime(2024, 5, 14, 10, 0, tzinfo=UTC)
ANNA, BORIS, VERA = 7, 8, 9  # Bitrix24 users of 101, 102, 103; 104 has none


def directory() -> Directory:
    people = [
        ("Anna", "101", ANNA),
        ("Boris", "102", BORIS),
        ("Vera", "103", VERA),
        ("Gleb", "104", None),
    ]
    return Directory(
        [
            Manager.model_validate({"name": name, "extension": ext, "bitrix24_user": user})
            for name, ext, user in people
        ]
    )


def settings_for(tmp_path: Path, url: str, **options: Any) -> Bitrix24Settings:
    secret = tmp_path / "bitrix24-webhook"
    secret.write_text(f"{url}\n", encoding="utf-8")
    return Bitrix24Settings.model_validate({"webhook_url_file": str(secret), **options})


def live() -> dict[str, Any]:
    return {
        "node": NODE,
        "linkedid": LINKEDID,
        "caller": CALLER,
        "caller_name": None,
        "did": DID,
        "source": "yandex",
        "started_at": "2024-05-14T10:00:00.000Z",
    }


def record(**changes: Any) -> CallRecord:
    answered = CallRecord(
        linkedid=LINKEDID,
        node=NODE,
        direction=Direction.INBOUND,
        did=DID,
        caller=CALLER,
        caller_name=None,
        status=CallStatus.ANSWERED,
        missed_reason=None,
        answered_by="102",
        transferred_to=None,
        started_at=STARTED,
        answered_at=datetime(2024, 5, 14, 10, 0, 12, tzinfo=UTC),
        ended_at=datetime(2024, 5, 14, 10, 0, 54, tzinfo=UTC),
        ring_seconds=12,
        talk_seconds=42,
        recording_path=None,
        source="yandex",
        medium="cpc",
        utm_source="yandex",
        utm_medium="cpc",
        utm_campaign="spring",
    )
    return answered.replace(**changes)


_ids = iter(range(1, 10_000))


def event(kind: str, payload: dict[str, Any], key: str = KEY) -> OutboxEvent:
    number = next(_ids)
    return OutboxEvent(
        id=number,
        target="bitrix24",
        call_key=key,
        kind=kind,
        key=f"{key}:{kind}:{number}",
        payload=payload,
        created_at=datetime.now(UTC),
        attempts=0,
    )


def ringing(*managers: str) -> OutboxEvent:
    return event("call.ringing", {"call": live(), "managers": list(managers)})


def answered(manager: str) -> OutboxEvent:
    return event("call.answered", {"call": live(), "manager": manager})


def finished(call: CallRecord, kind: str = "call.finished") -> OutboxEvent:
    return event(kind, {"event": kind, "delivery": "d", "call": call.to_json()})


def params_of(portal: Bitrix24Portal, method: str) -> list[dict[str, Any]]:
    return [seen.params for seen in portal.requests if seen.method == method]


@pytest.fixture
async def portal() -> AsyncIterator[Bitrix24Portal]:
    async with serving() as running:
        yield running


@pytest.fixture
def recordings(tmp_path: Path) -> Path:
    folder = tmp_path / "monitor"
    folder.mkdir()
    return folder


@pytest.fixture
async def platform(
    tmp_path: Path, portal: Bitrix24Portal, recordings: Path
) -> AsyncIterator[Bitrix24Platform]:
    built = Bitrix24Platform(
        settings_for(tmp_path, portal.webhook_url),
        directory(),
        recordings_dir=recordings,
        region="RU",
    )
    yield built
    await built.close()


REGISTER = "telephony.externalcall.register"
SHOW, HIDE = "telephony.externalcall.show", "telephony.externalcall.hide"
FINISH = "telephony.externalcall.finish"
ATTACH = "telephony.externalcall.attachrecord"


# -- the documented scenario -------------------------------------------------------------


async def test_a_call_is_registered_shown_hidden_finished_filled_and_recorded(
    platform: Bitrix24Platform, portal: Bitrix24Portal, recordings: Path
) -> None:
    """A new caller's card pops up once for each ringing manager, hides for the others when
    Boris answers, and the call ends up as his 42 s call on a new lead with its labels
    and recording."""
    links = DictLinks()
    audio = b"RIFF....WAVEfmt fake audio"
    (recordings / "2024").mkdir()
    (recordings / "2024" / "call-42.wav").write_bytes(audio)

    await platform.deliver(ringing("104", "101", "102"), links)
    await platform.deliver(ringing("103"), links)
    await platform.deliver(ringing("102"), links)
    await platform.deliver(answered("102"), links)
    await platform.deliver(finished(record(recording_path="2024/call-42.wav")), links)

    assert portal.methods() == [REGISTER, SHOW, SHOW, HIDE, FINISH, "crm.lead.update", ATTACH]
    [register] = params_of(portal, REGISTER)
    assert register == {
        "USER_ID": ANNA,
        "USER_PHONE_INNER": "101",
        "PHONE_NUMBER": CALLER,
        "LINE_NUMBER": DID,
        "TYPE": 2,
        "CALL_START_DATE": "2024-05-14T10:00:00+00:00",
        "CRM_CREATE": 1,
        "SHOW": 1,
        "EXTERNAL_CALL_ID": KEY,
    }
    call_id = links.data[KEY]["call_id"]
    assert [p["USER_ID"] for p in params_of(portal, SHOW)] == [[BORIS], [VERA]]
    assert params_of(portal, HIDE) == [{"CALL_ID": call_id, "USER_ID": [ANNA, VERA]}]
    assert params_of(portal, FINISH) == [
        {
            "CALL_ID": call_id,
            "USER_ID": BORIS,
            "DURATION": 42,
            "STATUS_CODE": "200",
            "ADD_TO_CHAT": 1,
        }
    ]
    [update] = params_of(portal, "crm.lead.update")
    lead = links.data[KEY]["created"][0][1]
    assert update == {
        "id": lead,
        "fields": {
            "UTM_SOURCE": "yandex",
            "UTM_MEDIUM": "cpc",
            "UTM_CAMPAIGN": "spring",
            "SOURCE_DESCRIPTION": "yandex",
        },
    }
    assert portal.entities[("LEAD", lead)]["UTM_CAMPAIGN"] == "spring"
    assert portal.call(call_id).records == [("call-42.wav", audio)]
    assert base64.b64decode(params_of(portal, ATTACH)[0]["FILE_CONTENT"]) == audio
    kept = links.data[KEY]
    assert (kept["finished"], kept["record_attached"]) == (True, True)


async def test_a_call_that_ended_before_ringing_was_seen_is_registered_then_finished(
    platform: Bitrix24Platform, portal: Bitrix24Portal
) -> None:
    """A missed call recovered after a downtime is registered without a card for the
    manager it rang and logged as missed on the caller's contact, labels and all."""
    contact = portal.add_contact(CALLER, assigned_by=BORIS)
    links = DictLinks()
    attempt = RingAttempt("103", "PJSIP/103-0001", STARTED, STARTED, "noanswer")
    missed = record(
        status=CallStatus.MISSED,
        missed_reason=MissedReason.NO_ANSWER,
        answered_by=None,
        answered_at=None,
        talk_seconds=0,
        attempts=(attempt,),
        recovered_from="cel",
    )

    await platform.deliver(finished(missed), links)

    assert portal.methods() == [REGISTER, FINISH, "crm.contact.update"]
    [register] = params_of(portal, REGISTER)
    assert (register["USER_ID"], register["SHOW"], register["TYPE"]) == (VERA, 0, 2)
    [finish] = params_of(portal, FINISH)
    assert (finish["USER_ID"], finish["STATUS_CODE"], finish["DURATION"]) == (VERA, "304", 0)
    assert finish["FAILED_REASON"] == "no_answer"
    assert params_of(portal, "crm.contact.update")[0]["id"] == contact
    assert portal.entities[("CONTACT", contact)]["UTM_SOURCE"] == "yandex"


async def test_every_event_delivered_twice_repeats_nothing(
    platform: Bitrix24Platform, portal: Bitrix24Portal, recordings: Path
) -> None:
    """After a crash the outbox sends events again: Bitrix24 sees each step once."""
    (recordings / "call.mp3").write_bytes(b"ID3 fake mp3")
    links = DictLinks()
    events = [
        ringing("101", "102"),
        answered("101"),
        finished(record(answered_by="101", recording_path="call.mp3")),
    ]
    for each in events:
        await platform.deliver(each, links)
        await platform.deliver(each, links)
    await platform.deliver(finished(record(answered_by="101", recording_path="call.mp3")), links)

    assert portal.methods() == [REGISTER, SHOW, HIDE, FINISH, "crm.lead.update", ATTACH]
    assert portal.refused == []


async def test_an_updated_call_rewrites_only_its_changed_fields(
    platform: Bitrix24Platform, portal: Bitrix24Portal
) -> None:
    """A call changed after it was logged updates only the lead's fields, and only when
    its labels changed."""
    links = DictLinks()
    await platform.deliver(finished(record()), links)
    before = len(portal.requests)

    await platform.deliver(finished(record(spam=None, is_target=True), "call.updated"), links)
    assert len(portal.requests) == before
    await platform.deliver(finished(record(utm_campaign="summer"), "call.updated"), links)

    assert portal.methods()[before:] == ["crm.lead.update"]
    lead = links.data[KEY]["created"][0][1]
    assert portal.entities[("LEAD", lead)]["UTM_CAMPAIGN"] == "summer"


async def test_a_recording_not_yet_on_disk_is_attached_by_a_later_update(
    platform: Bitrix24Platform, portal: Bitrix24Portal, recordings: Path
) -> None:
    """A recording still missing when the call ends does not hold the call back and goes
    to Bitrix24 with the call's next update once it is there."""
    links = DictLinks()
    call = record(recording_path="late.wav")
    with capture_logs() as logs:
        await platform.deliver(finished(call), links)
    assert ATTACH not in portal.methods()
    assert any(entry["event"] == "crm.bitrix24_recording_skipped" for entry in logs)

    (recordings / "late.wav").write_bytes(b"RIFF late")
    await platform.deliver(finished(call.replace(is_target=True), "call.updated"), links)

    assert portal.methods().count(ATTACH) == 1
    assert portal.methods().count(FINISH) == 1


async def test_without_show_card_nobody_gets_a_card(
    tmp_path: Path, portal: Bitrix24Portal, recordings: Path
) -> None:
    """With show_card and create_leads off the call is logged with no card popping up and
    no lead made for an unknown caller."""
    settings = settings_for(tmp_path, portal.webhook_url, show_card=False, create_leads=False)
    platform = Bitrix24Platform(settings, directory(), recordings_dir=recordings, region="RU")
    links = DictLinks()
    try:
        await platform.deliver(ringing("101", "102"), links)
        await platform.deliver(answered("102"), links)
        await platform.deliver(finished(record()), links)
    finally:
        await platform.close()

    assert portal.methods() == [REGISTER, FINISH]
    [register] = params_of(portal, REGISTER)
    assert (register["SHOW"], register["CRM_CREATE"]) == (0, 0)
    assert not [key for key in portal.entities if key[0] == "LEAD"]


async def test_ringing_managers_without_a_bitrix24_account_wait_for_the_end(
    platform: Bitrix24Platform, portal: Bitrix24Portal
) -> None:
    """A call ringing only for a manager unknown to Bitrix24 is registered at its end, for
    the first manager of the directory who has an account."""
    links = DictLinks()
    await platform.deliver(ringing("104"), links)
    assert portal.requests == []
    await platform.deliver(finished(record(answered_by="104")), links)

    assert params_of(portal, REGISTER)[0]["USER_ID"] == ANNA
    assert params_of(portal, FINISH)[0]["USER_ID"] == ANNA


@pytest.mark.parametrize("variable", ["CALLBACK_CRM_CALL_ID", "BITRIX24_CALL_ID"])
async def test_a_click_to_call_is_finished_on_bitrix24s_own_call_id(
    platform: Bitrix24Platform, portal: Bitrix24Portal, variable: str
) -> None:
    """A call a manager started from Bitrix24 is finished on the CALL_ID Bitrix24 gave it,
    never registered a second time."""
    call_id = "externalCall.click.1715670000"
    params = {"USER_ID": BORIS, "PHONE_NUMBER": CALLER, "TYPE": 1}
    portal.calls[call_id] = PortalCall(call_id, params, portal.clock(), None)
    outbound = record(
        direction=Direction.OUTBOUND,
        did=None,
        answered_by="102",
        variables={variable: call_id},
        utm_source=None,
        utm_medium=None,
        utm_campaign=None,
        source=None,
    )

    await platform.deliver(finished(outbound), DictLinks())

    assert portal.methods() == [FINISH]
    [finish] = params_of(portal, FINISH)
    assert (finish["CALL_ID"], finish["USER_ID"], finish["DURATION"]) == (call_id, BORIS, 42)


# -- trouble -------------------------------------------------------------------------------


async def test_the_rate_limit_pauses_and_the_retry_resumes_where_it_stopped(
    tmp_path: Path, recordings: Path
) -> None:
    """Past Bitrix24's request limit the event waits about a second without Bitrix24
    counting as down, then carries on with the step that was refused."""
    now = [0.0]
    (recordings / "call.wav").write_bytes(b"RIFF")
    async with serving(burst=3, rate=2.0, clock=lambda: now[0]) as portal:
        settings = settings_for(tmp_path, portal.webhook_url)
        platform = Bitrix24Platform(settings, directory(), recordings_dir=recordings, region="RU")
        links = DictLinks()
        try:
            with pytest.raises(PlatformError) as refused:
                await platform.deliver(finished(record(recording_path="call.wav")), links)
            now[0] += 1.0
            await platform.deliver(finished(record(recording_path="call.wav")), links)
        finally:
            await platform.close()

    assert refused.value.retry_after == pytest.approx(1.0, abs=0.5)
    assert not refused.value.down and not refused.value.permanent
    assert "QUERY_LIMIT_EXCEEDED" in refused.value.reason
    assert portal.refused == [(ATTACH, "QUERY_LIMIT_EXCEEDED")]
    assert portal.methods() == [REGISTER, FINISH, "crm.lead.update", ATTACH]


@pytest.mark.parametrize("answer", ["INVALID_CREDENTIALS", "NO_AUTH_FOUND"])
async def test_a_wrong_webhook_code_is_down_and_tells_no_secret(
    tmp_path: Path, portal: Bitrix24Portal, recordings: Path, answer: str
) -> None:
    """A revoked or mistyped webhook shows Bitrix24 as down, with neither the error nor
    the log showing the webhook's address or code."""
    portal.auth_error = answer
    wrong = "wr0ngc0de0000xyz"
    url = portal.webhook_url.replace(CODE, wrong)
    platform = Bitrix24Platform(
        settings_for(tmp_path, url), directory(), recordings_dir=recordings, region="RU"
    )
    try:
        with capture_logs() as logs, pytest.raises(PlatformError) as refused:
            await platform.deliver(ringing("101"), DictLinks())
    finally:
        await platform.close()

    assert refused.value.down and not refused.value.permanent
    assert answer in refused.value.reason
    texts = [str(refused.value), repr(refused.value), repr(refused.value.__cause__), repr(logs)]
    for secret in (wrong, url, url.rstrip("/")):
        assert all(secret not in text for text in texts)


async def test_a_portal_out_of_reach_is_down(
    platform: Bitrix24Platform, portal: Bitrix24Portal
) -> None:
    """A portal refusing connections or answering 503 pages is down, to be tried again."""
    await portal.refuse()
    with pytest.raises(PlatformError) as refused:
        await platform.deliver(ringing("101"), DictLinks())
    assert refused.value.down and "connection refused" in refused.value.reason
    assert CODE not in refused.value.reason

    await portal.resume()
    portal.down = True
    with pytest.raises(PlatformError) as unavailable:
        await platform.deliver(ringing("101"), DictLinks())
    assert unavailable.value.down and "503" in unavailable.value.reason


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (200, "<html>maintenance</html>"),
        (200, "[1, 2, 3]"),
        (200, '{"time": {"start": 1}}'),
        (200, '{"result": "registered"}'),
        (200, '{"result": {"CALL_ID": null}}'),
        (502, "Bad Gateway"),
        (200, '{"result": {"CALL_ID": {"nested": 1}}}'),
    ],
)
async def test_garbage_answers_become_platform_errors(
    platform: Bitrix24Platform, portal: Bitrix24Portal, status: int, body: str
) -> None:
    """Whatever a broken portal or proxy answers, the event is retried later, never crashes."""
    portal.script.append((status, body))
    links = DictLinks()
    with pytest.raises(PlatformError) as refused:
        await platform.deliver(ringing("101"), links)
    assert refused.value.down and not refused.value.permanent
    assert links.data == {}


async def test_a_call_id_bitrix24_does_not_know_is_refused_for_good(
    platform: Bitrix24Platform, portal: Bitrix24Portal
) -> None:
    """Finishing a call Bitrix24 does not know is given up at once, without Bitrix24
    counting as down."""
    outbound = record(
        direction=Direction.OUTBOUND, variables={"BITRIX24_CALL_ID": "externalCall.x"}
    )
    with pytest.raises(PlatformError) as refused:
        await platform.deliver(finished(outbound), DictLinks())
    assert refused.value.permanent and not refused.value.down
    assert "ERROR_CORE" in refused.value.reason


async def test_a_malformed_event_is_refused_for_good(platform: Bitrix24Platform) -> None:
    """An event whose payload is not a call cannot be delivered by trying again."""
    with pytest.raises(PlatformError) as refused:
        await platform.deliver(event("call.finished", {"call": {"linkedid": 1}}), DictLinks())
    assert refused.value.permanent


# -- the CRM owner ---------------------------------------------------------------------------


async def test_find_owner_names_the_extension_of_the_responsible_manager(
    platform: Bitrix24Platform, portal: Bitrix24Portal
) -> None:
    """A caller known to the CRM is routed to the extension of their responsible manager,
    and to nobody when unknown or owned by someone without an extension."""
    portal.add_contact(CALLER, assigned_by=BORIS)
    portal.add_lead("+79160000001", assigned_by=55)

    assert await platform.find_owner("89161234567") == "102"
    assert await platform.find_owner("+79160000001") is None
    assert await platform.find_owner("+79169999999") is None
    searched = params_of(portal, "telephony.externalcall.searchcrmentities")
    assert searched[0] == {"PHONE_NUMBER": CALLER}


async def test_find_owner_raises_on_garbage(
    platform: Bitrix24Platform, portal: Bitrix24Portal
) -> None:
    """An answer that is not a list of entities is an error, not a guess."""
    portal.script.append((200, '{"result": {"CRM_ENTITY_TYPE": "CONTACT"}}'))
    with pytest.raises(PlatformError):
        await platform.find_owner(CALLER)


# -- the stand-in itself ---------------------------------------------------------------------


async def test_the_portal_takes_forms_and_any_spelling_of_a_method(
    portal: Bitrix24Portal,
) -> None:
    """Like a real portal, the stand-in reads PHP-style forms and case-insensitive names."""
    async with aiohttp.ClientSession() as session:
        form = {"USER_ID": "7", "PHONE_NUMBER": CALLER, "TYPE": "2", "CRM_CREATE": "1"}
        async with session.post(
            f"{portal.webhook_url}telephony.externalCall.register", data=form
        ) as r:
            call_id = (await r.json())["result"]["CALL_ID"]
        shown = [("CALL_ID", call_id), ("USER_ID[]", "8"), ("USER_ID[]", "9")]
        async with session.post(
            f"{portal.webhook_url}TELEPHONY.EXTERNALCALL.SHOW.json", data=shown
        ) as r:
            assert (await r.json())["result"] is True
        async with session.post(f"{portal.webhook_url}no.such.method.json", json={}) as r:
            assert r.status == 404
            assert (await r.json())["error"] == "ERROR_METHOD_NOT_FOUND"

    assert portal.call(call_id).shown == [7, 8, 9]
