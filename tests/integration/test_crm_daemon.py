"""The daemon and the CRMs end to end: a simulated call on a tracked number reaches the
Bitrix24 and amoCRM stand-ins through the outbox, in order, and an outage only delays it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from amocrm_server import AmoCrmStandIn
from bitrix24_events import Click, call_start, post_event
from bitrix24_server import serving
from browsing import write_wav
from daemons import http_environ, start_daemon, trace_settings
from waiting import WAIT, until

from pbx_tracker.sim.asterisk import FakeAsterisk
from pbx_tracker.sim.traces import trace_events
from traces import TRACE_CONFIG, TRACES

MONITOR = "/var/spool/asterisk/monitor/"
BITRIX24_USERS = {"101": 11, "102": 12, "103": 13}
AMOCRM_TOKEN = "amo-long-lived-token-0123456789"


def integration_config(tmp_path: Path, crm: dict[str, Any]) -> Path:
    """The traces' config with each manager's Bitrix24 and amoCRM user, and ``crm``."""
    config = yaml.safe_load(TRACE_CONFIG.read_text(encoding="utf-8"))
    for manager in config["managers"]:
        manager["bitrix24_user"] = BITRIX24_USERS[manager["extension"]]
        manager["amocrm_user"] = 900 + BITRIX24_USERS[manager["extension"]]
    config["crm"] = {"retry_initial": 0.05, "retry_max": 0.2, **crm}
    path = tmp_path / "pbx-tracker.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return path


def secret_file(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(f"{text}\n", encoding="utf-8")
    return str(path)


def recorded_in(folder: Path, messages: Iterator[Mapping[str, str]]) -> Iterator[dict[str, str]]:
    """The trace as if Asterisk recorded into ``folder`` (the daemon's recordings_dir)."""
    for message in messages:
        yield {key: value.replace(MONITOR, f"{folder}/") for key, value in message.items()}


async def test_a_ring_group_call_shows_in_bitrix24_from_ringing_to_recording(
    migrated_url: str, asterisk: FakeAsterisk, tmp_path: Path
) -> None:
    """A caller rings Anna, Boris and Vera at once and Boris answers: Bitrix24 gets the call
    registered once (for Anna), its card shown to Boris and Vera, hidden for those two when
    Boris answers, finished with Boris and the talk time, the lead's source filled in, and
    the recording attached — in that order."""
    recordings = tmp_path / "monitor"
    write_wav(recordings / "1795348362.13.wav")
    async with serving() as portal:
        url_file = secret_file(tmp_path, "bitrix24-webhook", portal.webhook_url)
        bitrix24 = {"webhook_url_file": url_file, "fields": {"SOURCE_DESCRIPTION": "source"}}
        config = integration_config(tmp_path, {"bitrix24": bitrix24})
        settings = trace_settings(
            migrated_url,
            asterisk.port,
            tmp_path,
            config=config,
            PBX_TRACKER_RECORDINGS_DIR=str(recordings),
        )
        async with start_daemon(settings, asyncio.Event()) as running:
            messages = trace_events(TRACES / "06_ringgroup.jsonl")
            await asterisk.play(recorded_in(recordings, messages), speed=4)
            await running.wait_for_records(1)
            attached = "telephony.externalcall.attachrecord"
            await until(lambda: attached in portal.methods(), portal.changed, WAIT)
            outbox = running.daemon.outbox["bitrix24"]
            await until(lambda: outbox.state.pending == 0, outbox.rounds, WAIT)
    calls = [(r.method, r.params) for r in portal.requests]
    assert [method for method, _ in calls] == [
        "telephony.externalcall.register",
        "telephony.externalcall.show",
        "telephony.externalcall.hide",
        "telephony.externalcall.finish",
        "crm.lead.update",
        attached,
    ]
    register, show, hide, finish, lead, record = (params for _, params in calls)
    assert register["USER_ID"] == 11 and register["TYPE"] == 2
    assert register["PHONE_NUMBER"] == "+79161234506"
    assert register["LINE_NUMBER"] == "+74951110001"
    assert sorted(show["USER_ID"]) == [12, 13]
    assert sorted(hide["USER_ID"]) == [11, 13]
    assert finish["USER_ID"] == 12 and finish["STATUS_CODE"] == "200"
    assert int(finish["DURATION"]) == 4
    assert lead["fields"] == {"SOURCE_DESCRIPTION": "yandex-direct"}
    assert record["CALL_ID"] == register_call_id(portal) and record["FILE_CONTENT"]
    assert {finish["CALL_ID"], show["CALL_ID"], hide["CALL_ID"]} == {register_call_id(portal)}


def outbox_figure(daemon: Any, name: str, target: str = "amocrm") -> float:
    """``pbx_tracker_outbox_<name>{target=...}`` as /metrics shows it now."""
    for family in daemon.daemon_metrics.collect():
        for sample in family.samples:
            if sample.name == f"pbx_tracker_outbox_{name}" and sample.labels == {"target": target}:
                return float(sample.value)
    raise AssertionError(f"no pbx_tracker_outbox_{name} for {target}")


def register_call_id(portal: Any) -> str:
    (call_id,) = portal.calls
    return str(call_id)


async def test_an_amocrm_outage_delays_the_calls_and_loses_none(
    migrated_url: str, asterisk: FakeAsterisk, tmp_path: Path
) -> None:
    """amoCRM is down while two calls are made: /healthz shows it down, each waiting call is
    not hammered (one probe per backoff), and once it is back both calls land on their
    contacts, each once."""
    async with AmoCrmStandIn(AMOCRM_TOKEN) as amocrm:
        amocrm.add_contact("Client one", "+79161234501", responsible_user_id=911)
        amocrm.add_contact("Client three", "+79161234503", responsible_user_id=912)
        amocrm.down = True
        token_file = secret_file(tmp_path, "amocrm-token", AMOCRM_TOKEN)
        crm = {"amocrm": {"base_url": amocrm.base_url, "token_file": token_file}}
        settings = trace_settings(
            migrated_url, asterisk.port, tmp_path, config=integration_config(tmp_path, crm)
        )
        async with start_daemon(settings, asyncio.Event()) as running:
            for name in ("01_answered_simple.jsonl", "03_missed_no_answer.jsonl"):
                await asterisk.play(trace_events(TRACES / name))
            await running.wait_for_records(2)
            outbox = running.daemon.outbox["amocrm"]
            await until(lambda: outbox.state.down_since is not None, outbox.rounds, WAIT)
            _, health = await running.daemon.health.answer()
            assert health.parts is not None and health.parts["outbox.amocrm"].state == "down"
            assert outbox_figure(running.daemon, "up") == 0.0
            assert outbox_figure(running.daemon, "pending") == 2.0
            await until(lambda: amocrm.down_answers >= 2, amocrm.changed, WAIT)
            probes = amocrm.down_answers
            amocrm.down = False
            await until(lambda: len(amocrm.calls) == 2, amocrm.changed, WAIT)
            await until(lambda: outbox.state.pending == 0, outbox.rounds, WAIT)
            _, health = await running.daemon.health.answer()
            assert health.parts is not None and health.parts["outbox.amocrm"].state == "ok"
    statuses = sorted((call["phone"], call["call_status"]) for call in amocrm.calls)
    assert statuses == [("+79161234501", 4), ("+79161234503", 6)]
    assert probes < 10  # the two calls waited behind one probe at a time, backing off


async def test_a_click_in_bitrix24_rings_the_manager_and_its_call_is_finished_there(
    migrated_url: str, asterisk: FakeAsterisk, tmp_path: Path
) -> None:
    """Boris clicks a customer's number in Bitrix24: Asterisk rings Boris's phone, then the
    customer, and once the call is over Bitrix24's own call (the click's CALL_ID) is
    finished with Boris and the talk time; nothing is registered a second time."""
    token = "bitrix24-app-token-4242"
    async with serving() as portal:
        bitrix24 = {
            "webhook_url_file": secret_file(tmp_path, "bitrix24-webhook", portal.webhook_url),
            "application_token_file": secret_file(tmp_path, "bitrix24-token", token),
        }
        config = integration_config(tmp_path, {"bitrix24": bitrix24})
        environ = http_environ()
        settings = trace_settings(migrated_url, asterisk.port, tmp_path, config=config, **environ)
        async with start_daemon(settings, asyncio.Event()) as running:
            assert running.daemon.http is not None
            call_id = await clicked_call(portal.webhook_url, user_id=12, phone="+79161230077")
            url = f"http://127.0.0.1:{running.daemon.http.port}/crm/bitrix24/events"
            click = Click(user_id=12, phone_number="+79161230077", call_id=call_id)
            status, _ = await post_event(url, call_start(click, token))
            assert status == 200
            await running.wait_for_records(1)
            finished = "telephony.externalcall.finish"
            await until(lambda: finished in portal.methods(), portal.changed, WAIT)
    (originate,) = asterisk.actions_named("Originate")
    assert originate["Channel"].endswith("/102") and originate["Exten"] == "79161230077"
    finish = next(r.params for r in portal.requests if r.method == finished)
    assert finish["CALL_ID"] == call_id and finish["USER_ID"] == 12
    assert finish["STATUS_CODE"] == "200" and int(finish["DURATION"]) > 0
    registered = [r for r in portal.requests if r.method == "telephony.externalcall.register"]
    assert len(registered) == 1  # the portal's own, for the click


async def test_a_click_whose_manager_is_busy_ends_bitrix24s_call(
    migrated_url: str, asterisk: FakeAsterisk, tmp_path: Path
) -> None:
    """Boris clicks a number while his phone is busy: no call is placed, and Bitrix24's call
    for the click is finished at once for Boris, 0 s, busy (486), not left open."""
    token = "bitrix24-app-token-4242"
    asterisk.originate_outcomes["PJSIP/102"] = "busy"  # the traces config dials PJSIP/<ext>
    async with serving() as portal:
        bitrix24 = {
            "webhook_url_file": secret_file(tmp_path, "bitrix24-webhook", portal.webhook_url),
            "application_token_file": secret_file(tmp_path, "bitrix24-token", token),
        }
        config = integration_config(tmp_path, {"bitrix24": bitrix24})
        settings = trace_settings(
            migrated_url, asterisk.port, tmp_path, config=config, **http_environ()
        )
        async with start_daemon(settings, asyncio.Event()) as running:
            assert running.daemon.http is not None
            call_id = await clicked_call(portal.webhook_url, user_id=12, phone="+79161230077")
            url = f"http://127.0.0.1:{running.daemon.http.port}/crm/bitrix24/events"
            click = Click(user_id=12, phone_number="+79161230077", call_id=call_id)
            assert (await post_event(url, call_start(click, token)))[0] == 200
            finished = "telephony.externalcall.finish"
            await until(lambda: finished in portal.methods(), portal.changed, WAIT)
    finish = next(r.params for r in portal.requests if r.method == finished)
    assert finish["CALL_ID"] == call_id and finish["USER_ID"] == 12
    assert (finish["STATUS_CODE"], int(finish["DURATION"])) == ("486", 0)


async def clicked_call(webhook_url: str, *, user_id: int, phone: str) -> str:
    """The call Bitrix24 registers itself when a user clicks a number (before the event)."""
    params = {"USER_ID": user_id, "PHONE_NUMBER": phone, "TYPE": 1}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{webhook_url}telephony.externalcall.register.json", json=params) as answer,
    ):
        return str((await answer.json())["result"]["CALL_ID"])
