"""Routing through the running daemon: the FastAGI server on a loopback port, asked the way
Asterisk asks it (the captured AGI requests), with live manager states from the fake AMI
server, the caller history from the real database, and the classic AGI script in front."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from bitrix24_server import serving
from daemons import start_daemon
from waiting import until

from pbx_tracker.agi.route import RouteHandler
from pbx_tracker.agi.server import FastAgiServer
from pbx_tracker.calls.records import CallStatus
from pbx_tracker.config import Settings, load_settings, settings_from_mapping
from pbx_tracker.daemon import Daemon
from pbx_tracker.routing.availability import ManagerBoard
from pbx_tracker.routing.desk import ManagerStatus
from pbx_tracker.routing.router import Router
from pbx_tracker.sim.agi_client import AgiCall, env_for_call, run_agi_session
from pbx_tracker.sim.agi_traces import read_agi_trace
from pbx_tracker.sim.asterisk import FakeAsterisk
from pbx_tracker.sim.traces import trace_events
from stored import missed_call, saved
from traces import TRACE_CONFIG, TRACES

WAIT = 15.0
ALL_THREE = "IAX2/101/101&IAX2/102/102&IAX2/103/103"
ROUTING = {
    "dial_template": "IAX2/{extension}/{extension}",
    "default_group": "sales",
    "groups": [
        {"name": "sales", "members": ["101", "102", "103"], "strategy": "longest_idle"},
        {"name": "sales-all", "members": ["101", "102", "103"], "strategy": "ring_all"},
        {"name": "sales-queue", "strategy": "queue", "queue": "sales", "ring_seconds": 60},
    ],
    "numbers": [
        {"did": "74951110001", "group": "sales-all"},
        {"did": "74951110003", "group": "sales-queue"},
    ],
    "missed": {"action": "voicemail", "voicemail_box": "100@default"},
}
SCRIPT = Path(__file__).parents[2] / "agi_scripts" / "pbx-tracker-route.agi"


def routing_settings(
    url: str, port: int, tmp_path: Path, *, crm: dict[str, Any] | None = None, **routing: Any
) -> Settings:
    """The traces' config with ``ROUTING`` (and ``routing``), the CRMs of ``crm``."""
    base = load_settings(TRACE_CONFIG, environ={})
    data = base.model_dump(mode="json", exclude={"routing", "agi"})
    data["ami"].update(port=port, secret="tracker-secret", reconnect_initial=0.05)
    data["database"].update(url=url, spill_path=str(tmp_path / "spill.jsonl"))
    data["calls"]["dead_letters"] = str(tmp_path / "dead-letters.jsonl")
    data["recordings_dir"] = str(tmp_path / "monitor")
    data["agi"] = {"port": 0}
    data["routing"] = {**ROUTING, **routing}
    if crm is not None:
        data["crm"] = crm
        for manager in data["managers"]:  # Bitrix24's users 11, 12, 13
            manager["bitrix24_user"] = 10 + int(manager["extension"]) % 100
    return settings_from_mapping(data, environ={})


class Running:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        assert daemon.agi is not None
        self.port = daemon.agi.port

    async def ask(self, env: list[tuple[str, str]], **variables: str) -> AgiCall:
        return await run_agi_session("127.0.0.1", self.port, env, variables, timeout=WAIT)

    async def route(self, call_id: str, caller: str, did: str = "74951110002") -> AgiCall:
        env = env_for_call(
            did=did, caller=caller, uniqueid=call_id, channel=f"IAX2/carrier-{call_id}"
        )
        return await self.ask(env)

    async def until(self, condition: Callable[[], bool]) -> None:
        """Wait (bounded) until the daemon has taken in enough AMI events for `condition`."""
        await until(condition, self.daemon.handled, WAIT)

    def status(self, extension: str) -> ManagerStatus:
        return self.daemon.board.status(extension)


@asynccontextmanager
async def running_daemon(settings: Settings) -> AsyncIterator[Running]:
    async with start_daemon(settings, asyncio.Event()) as running:
        yield Running(running.daemon)


@pytest.fixture
def sqlite_url(tmp_path: Path, sqlite_schema: Path) -> str:
    """A migrated SQLite database (a copy of the suite's migrated file)."""
    path = tmp_path / "calls.sqlite3"
    shutil.copyfile(sqlite_schema, path)
    return f"sqlite:///{path}"


def expected_answer(did: str) -> dict[str, str]:
    """What the router answers for a first ask on an idle PBX, by the config above."""
    if did == "74951110001":
        return {"ROUTE_TO": ALL_THREE, "ROUTE_TIMEOUT": "20", "ROUTE_STRATEGY": "ring_all"}
    if did == "74951110003":
        return {"ROUTE_QUEUE": "sales", "ROUTE_TIMEOUT": "60", "ROUTE_STRATEGY": "queue"}
    return {"ROUTE_TO": "IAX2/101/101", "ROUTE_TIMEOUT": "20", "ROUTE_STRATEGY": "longest_idle"}


@pytest.mark.parametrize("path", sorted(TRACES.glob("*.agi.txt")), ids=lambda p: p.stem)
async def test_captured_requests_get_a_manager_the_source_and_a_recording(
    path: Path, sqlite_url: str, asterisk: FakeAsterisk, tmp_path: Path
) -> None:
    """Each FastAGI request Asterisk sent in the captures, asked of the running daemon one
    call at a time (each call ends before the next is asked)."""
    settings = routing_settings(sqlite_url, asterisk.port, tmp_path)
    async with running_daemon(settings) as pbx:
        for session in read_agi_trace(path):
            call = await pbx.ask(session.env, **session.variables_read())
            env = dict(session.env)
            did, uniqueid = env["agi_arg_1"], env["agi_uniqueid"]
            pbx.daemon.board.release(uniqueid)  # the call is over before the next one
            variables = call.variables
            assert variables.items() >= expected_answer(did).items()
            assert variables["ROUTE_STATUS"] == "OK"
            assert variables["ROUTE_GROUP"] in ("sales", "sales-all", "sales-queue")
            # the dialplan's own source stays; the recording gets a dated name
            assert "__TRACK_SOURCE" not in variables
            recording = Path(variables["__TRACK_RECORDING"])
            assert recording.parent.parent.parent.parent == settings.recordings_dir
            assert recording.name.startswith(f"in-{did}-") and uniqueid in recording.name
            assert call.server_closed


async def test_two_calls_together_never_get_the_same_manager(
    sqlite_url: str, asterisk: FakeAsterisk, tmp_path: Path
) -> None:
    """Five calls arriving together with three managers each get a different manager, and the two
    left over go to voicemail."""
    settings = routing_settings(sqlite_url, asterisk.port, tmp_path)
    async with running_daemon(settings) as pbx:
        calls = await asyncio.gather(
            *(pbx.route(f"1795350000.{n}", f"7916000000{n}") for n in range(5))
        )
    offered = [call.variables["ROUTE_MANAGER"] for call in calls if call.variables["ROUTE_TO"]]
    assert sorted(offered) == ["101", "102", "103"]
    missed = [call.variables for call in calls if call.variables["ROUTE_STATUS"] == "MISSED"]
    assert len(missed) == 2
    assert all(v["ROUTE_MISSED"] == "voicemail" for v in missed)
    assert all(v["ROUTE_VOICEMAIL"] == "100@default" for v in missed)


async def test_a_manager_who_goes_busy_is_not_offered_until_free_again(
    sqlite_url: str, asterisk: FakeAsterisk, tmp_path: Path
) -> None:
    """A manager whose phone goes in use is skipped, offered again once free, and a manager whose
    phone is unavailable is never offered."""
    settings = routing_settings(sqlite_url, asterisk.port, tmp_path)
    async with running_daemon(settings) as pbx:
        await asterisk.set_device_state("IAX2/101", "INUSE")
        await pbx.until(lambda: pbx.status("101") is ManagerStatus.ON_CALL)
        first = await pbx.route("1795350001.1", "79160000001")
        assert first.variables["ROUTE_TO"] == "IAX2/102/102"
        await asterisk.set_device_state("IAX2/103", "UNAVAILABLE")
        await asterisk.set_device_state("IAX2/101", "NOT_INUSE")
        await pbx.until(lambda: pbx.status("103") is ManagerStatus.UNAVAILABLE)
        await pbx.until(lambda: pbx.status("101") is ManagerStatus.FREE)
        second = await pbx.route("1795350002.1", "79160000002")
        assert second.variables["ROUTE_TO"] == "IAX2/101/101"
        third = await pbx.route("1795350003.1", "79160000003")
        assert third.variables["ROUTE_STATUS"] == "MISSED"  # 102, 101 ringing; 103 is off


async def test_states_listed_at_login_count_before_any_change(
    sqlite_url: str, asterisk: FakeAsterisk, tmp_path: Path
) -> None:
    """A phone that was off before the daemon started is not offered (DeviceStateList)."""
    asterisk.states.add_member("sales", "IAX2/102")
    asterisk.states.change_device("IAX2/101", "UNAVAILABLE")
    asterisk.states.pause("IAX2/102", True, "break")
    settings = routing_settings(sqlite_url, asterisk.port, tmp_path)
    async with running_daemon(settings) as pbx:
        await pbx.until(lambda: pbx.status("102") is ManagerStatus.PAUSED)
        assert pbx.status("101") is ManagerStatus.UNAVAILABLE
        call = await pbx.route("1795350004.1", "79160000004")
    assert call.variables["ROUTE_TO"] == "IAX2/103/103"


async def test_returning_caller_rings_the_manager_they_talked_to(
    sqlite_url: str, asterisk: FakeAsterisk, tmp_path: Path
) -> None:
    """Sticky: the caller's last answered call (in the database) was with 103."""
    earlier = missed_call("1795000000.7", datetime.now(UTC) - timedelta(days=3), "+79161112233")
    talked = earlier.replace(
        status=CallStatus.ANSWERED, missed_reason=None, answered_by="103", talk_seconds=60
    )
    await saved(sqlite_url, talked)
    settings = routing_settings(sqlite_url, asterisk.port, tmp_path)
    async with running_daemon(settings) as pbx:
        returning = await pbx.route("1795350005.1", "79161112233")
        new = await pbx.route("1795350006.1", "79169998877")
    assert returning.variables["ROUTE_TO"] == "IAX2/103/103"
    assert returning.variables["ROUTE_STRATEGY"] == "sticky"
    assert new.variables["ROUTE_TO"] == "IAX2/101/101"


async def test_next_ask_goes_on_to_the_managers_not_tried_then_missed(
    sqlite_url: str, asterisk: FakeAsterisk, tmp_path: Path
) -> None:
    """The snippet asks again after each unanswered ring, passing step, group and tried."""
    settings = routing_settings(sqlite_url, asterisk.port, tmp_path)
    async with running_daemon(settings) as pbx:
        tried: list[str] = []
        answers = []
        for step in range(1, 5):
            args = ["74951110002", "79160000009", "1795350007.1", str(step), "sales"]
            env = env_for_call(
                did="74951110002",
                caller="79160000009",
                uniqueid="1795350007.1",
                channel="IAX2/carrier-77",
                args=[*args, "&".join(tried)],
            )
            pbx.daemon.board.release("1795350007.1")  # the last ring ended unanswered
            variables = (await pbx.ask(env)).variables
            answers.append(variables)
            tried = variables["ROUTE_TRIED"].split("&") if variables["ROUTE_TRIED"] else []
    assert [a["ROUTE_MANAGER"] for a in answers] == ["101", "102", "103", ""]
    assert answers[2]["ROUTE_TRIED"] == "101&102&103"
    assert answers[3]["ROUTE_STATUS"] == "MISSED"
    assert answers[0]["ROUTE_DECISION_1"].startswith("ring 101 (longest_idle in sales")
    assert answers[3]["ROUTE_DECISION_4"].startswith("missed (nobody free in sales")


def run_script(port: int, tmp_path: Path, env_lines: list[tuple[str, str]]) -> str:
    """The classic AGI script with Asterisk's side played by `agi_reply` lines on stdin."""
    conf = tmp_path / "agi.conf"
    conf.write_text(
        f"[router]\nport = {port}\ntimeout = 1.0\n[fallback]\ndial = IAX2/101/101\n",
        encoding="utf-8",
    )
    env_text = "".join(f"{key}: {value}\n" for key, value in env_lines) + "\n"
    replies = "200 result=0\n" * 40  # every GET: unset; every SET / VERBOSE: done
    completed = subprocess.run(
        [sys.executable, str(SCRIPT)],
        input=(env_text + replies).encode(),
        capture_output=True,
        timeout=WAIT,
        env={**os.environ, "PBX_TRACKER_AGI_CONF": str(conf)},
        check=True,
    )
    return completed.stdout.decode()


async def test_classic_agi_script_asks_the_running_daemon(
    sqlite_url: str, asterisk: FakeAsterisk, tmp_path: Path
) -> None:
    """The classic AGI script, run as Asterisk runs it, gets the running daemon's answer (ring all
    three managers) with no fallback."""
    settings = routing_settings(sqlite_url, asterisk.port, tmp_path)
    classic = [
        (k, v)
        for k, v in read_agi_trace(TRACES / "06_ringgroup.agi.txt")[0].env
        if not k.startswith("agi_network")
    ]
    async with running_daemon(settings) as pbx:
        commands = await asyncio.to_thread(run_script, pbx.port, tmp_path, classic)
    assert f'SET VARIABLE ROUTE_TO "{ALL_THREE}"' in commands
    assert 'SET VARIABLE ROUTE_STATUS "OK"' in commands
    assert "FALLBACK" not in commands


async def test_captured_calls_make_their_managers_busy_until_they_hang_up(
    sqlite_url: str, asterisk: FakeAsterisk, tmp_path: Path
) -> None:
    """Real traffic: while the captured ring-group call is in progress (102 talking), 102 is
    on a call and the router offers someone else; once it ends, 102 is free again."""
    settings = routing_settings(sqlite_url, asterisk.port, tmp_path)
    events = trace_events(TRACES / "06_ringgroup.jsonl")
    talking = next(i for i, e in enumerate(events) if e.get("Event") == "BridgeEnter") + 2
    async with running_daemon(settings) as pbx:
        await asterisk.play(events[:talking])
        await pbx.until(lambda: pbx.status("102") is ManagerStatus.ON_CALL)
        during = await pbx.route("1795350010.1", "79160000010", did="74951110001")  # ring all
        pbx.daemon.board.release("1795350010.1")
        await asterisk.play(events[talking:])
        await pbx.until(lambda: pbx.status("102") is ManagerStatus.FREE)
        statuses = {ext: pbx.status(ext) for ext in ("101", "102", "103")}
    assert during.variables["ROUTE_MANAGER"] == "101&103"
    assert during.variables["ROUTE_TO"] == "IAX2/101/101&IAX2/103/103"
    assert statuses == dict.fromkeys(("101", "102", "103"), ManagerStatus.FREE)


async def test_without_ami_the_answer_says_the_phone_states_may_be_stale(
    tmp_path: Path,
) -> None:
    """Asterisk's manager link is down: calls still ring someone, and the reason says why
    the choice may be off (nobody's state is known)."""
    settings = routing_settings("sqlite:///unused.sqlite3", 5038, tmp_path)
    board = ManagerBoard(settings.routing, settings.directory)
    handler = RouteHandler(Router(board), settings.recordings_dir, states_known=lambda: False)
    async with FastAgiServer({"route": handler}, settings.agi) as server:
        env = env_for_call(
            did="74951110002", caller="79160000011", uniqueid="1.1", channel="IAX2/carrier-1"
        )
        call = await run_agi_session("127.0.0.1", server.port, env, timeout=WAIT)
    assert call.variables["ROUTE_TO"] == "IAX2/101/101"
    assert call.variables["ROUTE_REASON"].endswith("phone states may be stale: no AMI connection")


async def test_the_callers_owner_in_bitrix24_rings_first(
    sqlite_url: str, asterisk: FakeAsterisk, tmp_path: Path
) -> None:
    """A caller Bitrix24 knows as Vera's (103) client rings Vera alone first though Anna has
    waited longest; a caller Bitrix24 does not know goes by the group's strategy."""
    async with serving() as portal:
        portal.add_contact("+79161112244", assigned_by=13)
        url_file = tmp_path / "bitrix24-webhook"
        url_file.write_text(portal.webhook_url, encoding="utf-8")
        crm = {"bitrix24": {"webhook_url_file": str(url_file)}, "owner_deadline_ms": 2000}
        groups = [{**ROUTING["groups"][0], "crm_owner": True}, *ROUTING["groups"][1:]]
        settings = routing_settings(sqlite_url, asterisk.port, tmp_path, crm=crm, groups=groups)
        async with running_daemon(settings) as pbx:
            owned = await pbx.route("1795350010.1", "79161112244")
            stranger = await pbx.route("1795350011.1", "79161112255")
    assert owned.variables["ROUTE_TO"] == "IAX2/103/103"
    assert owned.variables["ROUTE_STRATEGY"] == "crm_owner"
    assert stranger.variables["ROUTE_TO"] == "IAX2/101/101"
    assert stranger.variables["ROUTE_STRATEGY"] == "longest_idle"
    searched = [r for r in portal.requests if "searchcrmentities" in r.method]
    assert len(searched) == 2


async def test_a_crm_that_does_not_answer_in_time_does_not_hold_the_call(
    sqlite_url: str, asterisk: FakeAsterisk, tmp_path: Path
) -> None:
    """Bitrix24 cannot be reached: the call is routed by the group's strategy without waiting
    for it."""
    url_file = tmp_path / "bitrix24-webhook"
    url_file.write_text(f"http://127.0.0.1:{closed_port()}/rest/1/code/", encoding="utf-8")
    crm = {"bitrix24": {"webhook_url_file": str(url_file)}, "owner_deadline_ms": 300}
    groups = [{**ROUTING["groups"][0], "crm_owner": True}, *ROUTING["groups"][1:]]
    settings = routing_settings(sqlite_url, asterisk.port, tmp_path, crm=crm, groups=groups)
    async with running_daemon(settings) as pbx:
        call = await pbx.route("1795350012.1", "79161112244")
    assert call.variables["ROUTE_TO"] == "IAX2/101/101"
    assert call.variables["ROUTE_STRATEGY"] == "longest_idle"


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
