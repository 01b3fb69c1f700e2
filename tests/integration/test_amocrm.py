"""The amoCRM platform against a loopback stand-in of amoCRM's API v4 (tests/amocrm_server.py):
calls land on the caller's card, unknown callers become contacts or incoming leads once,
and amoCRM's refusals become the outbox's PlatformErrors without the token in them."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from amocrm_server import AmoCrmStandIn, Scripted
from platform_links import DictLinks
from structlog.testing import capture_logs

from pbx_tracker.calls.records import CallRecord, CallStatus, Direction, MissedReason
from pbx_tracker.crm.amocrm import AmoCrmPlatform, call_uniq
from pbx_tracker.crm.platform import OutboxEvent, PlatformError
from pbx_tracker.crm.settings import AmoCrmSettings
from pbx_tracker.staff import Directory, Manager

TOKEN = "amo-l0ng-lived-t0ken-4242"
ANNA_USER = 501
KNOWN_CALLER = "+79161234501"
STRANGER = "+79169990011"
STARTED = datetime(2024, 5, 14, 7, 0, tzinfo=UTC)
RECORDINGS = "https://pbx.example.test/recordings/{linkedid}"


def record(**changes: Any) -> CallRecord:
    """An inbound call from the known caller that Anna (101) answered, recorded."""
    base = CallRecord(
        linkedid="1715670000.42",
        node="pbx1",
        direction=Direction.INBOUND,
        did="+74951110002",
        caller=KNOWN_CALLER,
        caller_name="Ivan Petrov",
        status=CallStatus.ANSWERED,
        missed_reason=None,
        answered_by="101",
        transferred_to=None,
        started_at=STARTED,
        answered_at=STARTED.replace(second=12),
        ended_at=STARTED.replace(minute=3),
        ring_seconds=12,
        talk_seconds=168,
        recording_path="/var/spool/asterisk/monitor/1715670000.42.wav",
        source="google",
        medium="cpc",
        campaign="spring",
    )
    return base.replace(**changes)


def missed(reason: MissedReason, **changes: Any) -> CallRecord:
    return record(
        status=CallStatus.MISSED,
        missed_reason=reason,
        answered_by=None,
        answered_at=None,
        talk_seconds=0,
        recording_path=None,
        **changes,
    )


def event(call: CallRecord, kind: str = "call.finished", attempts: int = 0) -> OutboxEvent:
    key = f"{call.node}:{call.linkedid}"
    return OutboxEvent(
        id=1,
        target="amocrm",
        call_key=key,
        kind=kind,
        key=f"{key}:abc",
        payload={"event": kind, "delivery": f"{key}:abc", "call": call.to_json()},
        created_at=STARTED,
        attempts=attempts,
    )


@pytest.fixture
async def amocrm() -> AsyncIterator[AmoCrmStandIn]:
    async with AmoCrmStandIn(TOKEN) as server:
        server.add_contact("Ivan Petrov", KNOWN_CALLER, ANNA_USER)
        yield server


Build = Callable[..., AmoCrmPlatform]


@pytest.fixture
async def platform(amocrm: AmoCrmStandIn, tmp_path: Path) -> AsyncIterator[Build]:
    """Builds the platform for the stand-in with settings changed as asked; closes them all."""
    token_file = tmp_path / "amocrm-token"
    token_file.write_text(f"{TOKEN}\n", encoding="utf-8")
    directory = Directory([Manager(name="Anna", extension="101", amocrm_user=ANNA_USER)])
    built: list[AmoCrmPlatform] = []

    def build(**settings: Any) -> AmoCrmPlatform:
        values = {
            "base_url": amocrm.base_url,
            "token_file": str(token_file),
            "recording_link": RECORDINGS,
            "timeout": 5,
            **settings,
        }
        made = AmoCrmPlatform(AmoCrmSettings.model_validate(values), directory, region="RU")
        built.append(made)
        return made

    yield build
    for made in built:
        await made.close()


async def test_answered_call_lands_on_the_known_contact(
    amocrm: AmoCrmStandIn, platform: Build
) -> None:
    """An answered call shows on the caller's contact as a conversation, with its length,
    the manager who took it, where it came from and a link to its recording."""
    links = DictLinks()
    await platform().deliver(event(record()), links)

    (call,) = amocrm.calls
    assert call["entity_id"] == amocrm.contacts[0].id
    assert call["call_status"] == 4
    assert call["duration"] == 168
    assert call["direction"] == "inbound"
    assert call["responsible_user_id"] == ANNA_USER
    assert call["link"] == "https://pbx.example.test/recordings/1715670000.42"
    assert call["source"] == "pbx-tracker"
    assert call["uniq"] == call_uniq(record())
    assert call["created_at"] == int(STARTED.timestamp())
    assert "Anna" in call["call_result"] and "google" in call["call_result"]
    assert links.data["pbx1:1715670000.42"]["call_id"] == call["id"]


async def test_missed_busy_call_is_marked_line_busy(amocrm: AmoCrmStandIn, platform: Build) -> None:
    """A caller who got a busy line shows as 'line busy', without a recording or manager."""
    await platform().deliver(event(missed(MissedReason.BUSY)), DictLinks())

    (call,) = amocrm.calls
    assert call["call_status"] == 7
    assert call["duration"] == 0
    assert "link" not in call and "responsible_user_id" not in call
    assert call["call_result"].startswith("Missed: busy")


async def test_missed_unanswered_call_is_marked_not_reached(
    amocrm: AmoCrmStandIn, platform: Build
) -> None:
    """A call nobody answered shows as 'could not get through'."""
    await platform().deliver(event(missed(MissedReason.NO_ANSWER)), DictLinks())
    assert [call["call_status"] for call in amocrm.calls] == [6]


async def test_unknown_caller_becomes_a_contact_once(
    amocrm: AmoCrmStandIn, platform: Build
) -> None:
    """A caller amoCRM does not know gets a contact with the call on it, and the same event
    delivered again adds neither a second contact nor a second call."""
    links = DictLinks()
    amo = platform(unknown_callers="contact")
    stranger = record(caller=STRANGER, caller_name="Olga")
    await amo.deliver(event(stranger), links)
    await amo.deliver(event(stranger, attempts=1), links)
    await amo.deliver(event(stranger, kind="call.updated"), links)

    (made,) = [contact for contact in amocrm.contacts if contact.name == "Olga"]
    assert made.phones == [STRANGER]
    assert made.responsible_user_id == ANNA_USER
    (call,) = amocrm.calls
    assert call["entity_id"] == made.id
    assert len(amocrm.served("POST", "/api/v4/contacts")) == 1
    assert links.data["pbx1:1715670000.42"]["contact_id"] == made.id


async def test_contact_made_is_not_made_again_after_a_failed_call(
    amocrm: AmoCrmStandIn, platform: Build
) -> None:
    """When amoCRM fails right after the contact was made, the retry adds the call to that
    contact instead of making another."""
    links = DictLinks()
    amo = platform()
    stranger = record(caller=STRANGER, caller_name=None)
    amocrm.scripted = [Scripted(200, '{"_embedded": {"calls": [], "errors": [{}]}}')]
    amocrm.scripted.append(Scripted(200, '{"_embedded": {"contacts": [{"id": 777}]}}'))
    amocrm.scripted.append(Scripted(502, "Bad Gateway"))
    with pytest.raises(PlatformError) as failed:
        await amo.deliver(event(stranger), links)
    assert failed.value.down
    assert links.data["pbx1:1715670000.42"]["contact_id"] == 777

    amocrm.add_contact("+7 916 999-00-11", STRANGER, ANNA_USER)  # what amoCRM made
    await amo.deliver(event(stranger, attempts=1), links)
    assert amocrm.served("POST", "/api/v4/contacts") == []
    assert len(amocrm.calls) == 1


async def test_unknown_caller_becomes_an_incoming_lead_once(
    amocrm: AmoCrmStandIn, platform: Build
) -> None:
    """In Unsorted mode a caller amoCRM does not know becomes one incoming lead, even when
    the event comes twice."""
    links = DictLinks()
    amo = platform(unknown_callers="unsorted", pipeline_id=3166396)
    stranger = record(caller=STRANGER)
    await amo.deliver(event(stranger), links)
    await amo.deliver(event(stranger, attempts=1), links)

    (lead,) = amocrm.unsorted
    assert lead["source_uid"] == "pbx-tracker"
    assert lead["pipeline_id"] == 3166396
    metadata = lead["metadata"]
    assert metadata["phone"] == STRANGER and metadata["from"] == STRANGER
    assert metadata["duration"] == 168 and metadata["is_call_event_needed"] is True
    assert metadata["uniq"] == call_uniq(stranger)
    assert metadata["link"] == "https://pbx.example.test/recordings/1715670000.42"
    assert links.data["pbx1:1715670000.42"]["lead_id"] == lead["lead_id"]
    assert amocrm.calls == [] and len(amocrm.contacts) == 1


async def test_unknown_caller_is_left_when_so_configured(
    amocrm: AmoCrmStandIn, platform: Build
) -> None:
    """With unknown_callers none, an unknown caller's call is logged and nothing is made."""
    with capture_logs() as logs:
        await platform(unknown_callers="none").deliver(event(record(caller=STRANGER)), DictLinks())
    assert amocrm.calls == [] and amocrm.unsorted == [] and len(amocrm.contacts) == 1
    assert any(entry["event"] == "crm.amocrm_call_left" for entry in logs)


async def test_live_events_are_accepted_and_ignored(amocrm: AmoCrmStandIn, platform: Build) -> None:
    """Ringing and answered events send nothing to amoCRM."""
    ringing = OutboxEvent(1, "amocrm", "pbx1:1", "call.ringing", "k", {"call": {}}, STARTED, 0)
    await platform().deliver(ringing, DictLinks())
    assert amocrm.requests == []


async def test_too_many_requests_asks_to_wait(amocrm: AmoCrmStandIn, platform: Build) -> None:
    """Past amoCRM's requests per second the target is told to wait a second, or the
    Retry-After amoCRM sent."""
    amocrm.rate_limit, amocrm.window = 2, 60.0
    amo = platform()
    await amo.find_owner(KNOWN_CALLER)
    await amo.find_owner(KNOWN_CALLER)
    with pytest.raises(PlatformError) as limited:
        await amo.deliver(event(record()), DictLinks())
    assert limited.value.retry_after == 1.0
    assert not limited.value.permanent and not limited.value.down
    assert amocrm.calls == []

    amocrm.rate_limit = 100
    amocrm.scripted = [Scripted(429, "{}", {"Retry-After": "5"})]
    with pytest.raises(PlatformError) as told:
        await amo.find_owner(KNOWN_CALLER)
    assert told.value.retry_after == 5.0


async def test_revoked_token_is_down_without_the_token(
    amocrm: AmoCrmStandIn, platform: Build
) -> None:
    """A revoked token shows the platform down; neither the reason nor any log holds it."""
    amocrm.revoke()
    with capture_logs() as logs, pytest.raises(PlatformError) as refused:
        await platform().deliver(event(record()), DictLinks())
    assert refused.value.down and not refused.value.permanent
    assert "401" in refused.value.reason
    for text in (str(refused.value), repr(refused.value.__cause__), repr(logs)):
        assert TOKEN not in text and TOKEN[:8] not in text


async def test_token_echoed_by_the_account_is_scrubbed(
    amocrm: AmoCrmStandIn, platform: Build
) -> None:
    """Even an account that echoes the token in its error never puts it in the reason."""
    echo = f'{{"title": "Forbidden", "detail": "token {TOKEN} blocked", "status": 403}}'
    amocrm.scripted = [Scripted(403, echo)]
    with pytest.raises(PlatformError) as refused:
        await platform().deliver(event(record()), DictLinks())
    assert refused.value.down
    assert TOKEN not in refused.value.reason and "403" in refused.value.reason


async def test_validation_errors_are_permanent(amocrm: AmoCrmStandIn, platform: Build) -> None:
    """A call amoCRM refuses as invalid is given up at once rather than retried."""
    bad = record(talk_seconds=-1)
    with pytest.raises(PlatformError) as refused:
        await platform().deliver(event(bad), DictLinks())
    assert refused.value.permanent and not refused.value.down
    assert "400" in refused.value.reason


@pytest.mark.parametrize(
    "answer",
    [
        Scripted(200, "<html>maintenance</html>"),
        Scripted(200, "[1, 2, 3]"),
        Scripted(200, '{"_embedded": {"calls": "no"}}'),
        Scripted(200, '{"_embedded": {"calls": [{"id": "x", "request_id": "0"}]}}'),
        Scripted(200, '{"_embedded": {"calls": [], "errors": []}}'),
    ],
)
async def test_garbage_answers_become_platform_errors(
    amocrm: AmoCrmStandIn, platform: Build, answer: Scripted
) -> None:
    """An account answering nonsense shows as a failure to retry, never as a crash."""
    amocrm.scripted = [answer]
    links = DictLinks()
    with pytest.raises(PlatformError) as failed:
        await platform().deliver(event(record()), links)
    assert failed.value.down and not failed.value.permanent
    assert links.data == {}


async def test_amocrm_down_and_unreachable_are_down(amocrm: AmoCrmStandIn, platform: Build) -> None:
    """A 503 and an address nobody listens on both show the platform down."""
    amocrm.down = True
    with pytest.raises(PlatformError) as unavailable:
        await platform().deliver(event(record()), DictLinks())
    assert unavailable.value.down and "503" in unavailable.value.reason

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        nobody = f"http://127.0.0.1:{probe.getsockname()[1]}"
    with pytest.raises(PlatformError) as unreachable:
        await platform(base_url=nobody).deliver(event(record()), DictLinks())
    assert unreachable.value.down


async def test_repeated_excess_blocks_the_account(amocrm: AmoCrmStandIn, platform: Build) -> None:
    """After many requests past the limit amoCRM blocks the address; that shows as down."""
    amocrm.rate_limit, amocrm.window, amocrm.block_after = 1, 60.0, 3
    amo = platform()
    await amo.find_owner(KNOWN_CALLER)
    for _ in range(3):
        with pytest.raises(PlatformError) as limited:
            await amo.find_owner(KNOWN_CALLER)
        assert limited.value.retry_after is not None
    with pytest.raises(PlatformError) as blocked:
        await amo.find_owner(KNOWN_CALLER)
    assert blocked.value.down and blocked.value.retry_after is None
    assert "403" in blocked.value.reason


async def test_find_owner_names_the_responsible_managers_extension(
    amocrm: AmoCrmStandIn, platform: Build
) -> None:
    """A caller whose contact belongs to Anna is routed to Anna's extension; a caller
    nobody knows, or whose manager is not ours, has no owner."""
    amocrm.add_contact("Someone else's", "+79165550000", 777)
    amo = platform()
    owners = await asyncio.gather(
        amo.find_owner("8 (916) 123-45-01"),
        amo.find_owner(STRANGER),
        amo.find_owner("+79165550000"),
    )
    assert list(owners) == ["101", None, None]
    queries = [seen.query["query"] for seen in amocrm.served("GET", "/api/v4/contacts")]
    assert sorted(queries) == sorted(["79161234501", "79169990011", "79165550000"])


async def test_find_owner_refuses_a_malformed_contact(
    amocrm: AmoCrmStandIn, platform: Build
) -> None:
    """A contact answered without a responsible user is a PlatformError, not a crash."""
    amocrm.scripted = [Scripted(200, '{"_embedded": {"contacts": [{"id": 5}]}}')]
    with pytest.raises(PlatformError):
        await platform().find_owner(KNOWN_CALLER)


async def test_hidden_caller_is_left(amocrm: AmoCrmStandIn, platform: Build) -> None:
    """A call without the caller's number cannot be placed on a card and sends nothing."""
    await platform().deliver(event(record(caller=None)), DictLinks())
    assert amocrm.requests == []


async def test_broken_event_is_given_up(amocrm: AmoCrmStandIn, platform: Build) -> None:
    """An event whose call record cannot be read is given up rather than retried forever."""
    broken = OutboxEvent(
        1, "amocrm", "pbx1:1", "call.finished", "k", {"call": {"x": 1}}, STARTED, 0
    )
    with pytest.raises(PlatformError) as refused:
        await platform().deliver(broken, DictLinks())
    assert refused.value.permanent
