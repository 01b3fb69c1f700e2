"""The config checked against a live Asterisk (the fake one, on loopback): the actions
the fake answers as Asterisk does, the check `check-config --live` and the daemon run
(after each AMI login), and what /healthz tells."""

from __future__ import annotations

import asyncio
import gc
import os
import shutil
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from ami_settings import ListenerSettings, shipped_write_classes
from cli_runner import run_process
from daemons import WAIT, RunningDaemon, start_daemon
from pydantic import SecretStr
from servers import http_server
from structlog.testing import capture_logs
from waiting import until

from pbx_tracker.ami.connection import AmiListener
from pbx_tracker.calls.events import AmiEvent
from pbx_tracker.config import Settings, load_settings
from pbx_tracker.daemon import Daemon
from pbx_tracker.selfcheck.live import EventClassWatch, check_live
from pbx_tracker.sim.asterisk import FakeAsterisk
from pbx_tracker.sim.traces import trace_events
from pbx_tracker.store.engine import make_async_engine
from pbx_tracker.store.migrate import upgrade_to_head
from pbx_tracker.web.health import Health, PartState, database_probe
from traces import TRACE_CONFIG, TRACES

SHIPPED = shipped_write_classes()
CEL_LOG = TRACES / "cel" / "01_answered_simple.cel.csv"
TRAP = "routing.dial_template: PJSIP/{extension} — "
FIX = "; set routing.dial_template to IAX2/{extension}"


@pytest.fixture(name="fake")
async def _fake() -> AsyncIterator[FakeAsterisk]:
    async with FakeAsterisk() as server:
        yield server


def iax2_only(fake: FakeAsterisk, classes: frozenset[str] | None = SHIPPED) -> FakeAsterisk:
    """The README's trap: an Asterisk with chan_iax2 and no PJSIP, the shipped AMI user."""
    fake.setup.modules = {"chan_iax2"}
    fake.setup.write_classes = classes
    return fake


def site(
    tmp_path: Path,
    port: int,
    *,
    change: Callable[[dict[str, Any]], None] | None = None,
    **environ: str,
) -> Settings:
    """The traces' config (changed by ``change``) against the fake on ``port``, its
    recordings folder and a CEL log Asterisk wrote in ``tmp_path``."""
    raw = yaml.safe_load(TRACE_CONFIG.read_text(encoding="utf-8"))
    if change is not None:
        change(raw)
    config = tmp_path / "pbx-tracker.yaml"
    config.write_text(yaml.safe_dump(raw), encoding="utf-8")
    recordings = tmp_path / "monitor"
    recordings.mkdir(exist_ok=True)
    cel = tmp_path / "cel-custom" / "Master.csv"
    cel.parent.mkdir(exist_ok=True)
    cel.write_bytes(CEL_LOG.read_bytes())
    environ = {
        "PBX_TRACKER_RECORDINGS_DIR": str(recordings),
        "PBX_TRACKER_CEL__FILE": str(cel),
        **environ,
    }
    return load_settings(config, environ={"PBX_TRACKER_AMI__PORT": str(port), **environ})


def lines(problems: list[Any]) -> list[str]:
    return [str(problem) for problem in problems]


# -- the fake answers as Asterisk ----------------------------------------------------


@asynccontextmanager
async def session(fake: FakeAsterisk) -> AsyncIterator[AmiListener]:
    """A logged-in AMI session with the fake's user."""
    up = asyncio.Event()
    settings = ListenerSettings(SecretStr(fake.secret), port=fake.port, username=fake.username)
    listener = AmiListener(settings, on_status=lambda text, connected: connected and up.set())
    task = asyncio.create_task(listener.run())
    try:
        await asyncio.wait_for(up.wait(), WAIT)
        yield listener
    finally:
        await listener.close()
        await asyncio.wait_for(task, WAIT)


async def ask(listener: AmiListener, **action: str) -> list[AmiEvent]:
    return await listener.send_action(action)


async def test_list_commands_shows_only_what_the_user_may_run(fake: FakeAsterisk) -> None:
    """The shipped user sees the actions it may run, with their classes, a loaded driver's
    own ones among them, and none of command or system."""
    iax2_only(fake)
    async with session(fake) as listener:
        [answer] = await ask(listener, Action="ListCommands")
    listed = answer.fields
    assert answer.get("Response") == "Success"
    assert listed["CoreShowChannels"].endswith("(Priv: system,reporting)")
    assert listed["Getvar"].endswith("(Priv: call,reporting)")
    assert listed["Originate"].endswith("(Priv: originate)")
    assert listed["Ping"].endswith("(Priv: <none>)")
    assert "IAXpeers" in listed
    assert not {"Command", "ModuleCheck", "PJSIPShowEndpoints", "SIPpeers"} & listed.keys()


async def test_actions_outside_the_users_classes_are_refused(fake: FakeAsterisk) -> None:
    """Command and ModuleCheck are refused "Permission denied" to the shipped user."""
    iax2_only(fake)
    async with session(fake) as listener:
        for action in (
            {"Action": "Command", "Command": "core show channeltypes"},
            {"Action": "ModuleCheck", "Module": "chan_iax2"},
        ):
            [answer] = await listener.send_action(action)
            assert (answer.get("Response"), answer.get("Message")) == (
                "Error",
                "Permission denied",
            )


async def test_command_and_module_check_answer_as_asterisk(fake: FakeAsterisk) -> None:
    """A user with every class gets the CLI's output as Output lines and module checks."""
    iax2_only(fake, classes=None)
    async with session(fake) as listener:
        [types] = await ask(listener, Action="Command", Command="core show channeltypes")
        [wrong] = await ask(listener, Action="Command", Command="core show nothing")
        [iax2] = await ask(listener, Action="ModuleCheck", Module="chan_iax2")
        [pjsip] = await ask(listener, Action="ModuleCheck", Module="chan_pjsip.so")
    assert (types.get("Response"), types.get("Message")) == ("Success", "Command output follows")
    output = types.get("Output").splitlines()
    assert output[0].split()[:2] == ["Type", "Description"]
    assert [line.split()[0] for line in output[2:-2]] == ["IAX2", "Local", "Announcer", "Recorder"]
    assert output[-1] == "4 channel drivers registered."
    assert wrong.get("Response") == "Error"
    assert wrong.get("Output").startswith("No such command 'core show nothing'")
    assert (iax2.get("Response"), iax2.get("Version")) == ("Success", "")
    assert (pjsip.get("Response"), pjsip.get("Message")) == ("Error", "Module not loaded")


async def test_dialplan_and_device_states_answer_as_asterisk(fake: FakeAsterisk) -> None:
    """ShowDialPlan lists a context or says it is missing; DEVICE_STATE is INVALID for a
    device no loaded driver knows."""
    iax2_only(fake)
    fake.setup.devices = {"IAX2/101"}
    fake.setup.add_context("from-trunk", "_X.", "s")
    async with session(fake) as listener:
        listing = await ask(listener, Action="ShowDialPlan", Context="from-trunk")
        [missing] = await ask(listener, Action="ShowDialPlan", Context="from-nowhere")
        states = {
            device: (await ask(listener, Action="Getvar", Variable=f"DEVICE_STATE({device})"))[0]
            for device in ("IAX2/101", "IAX2/102", "PJSIP/101")
        }
    assert (listing[0].get("EventList"), listing[0].get("Message")) == (
        "start",
        "DialPlan list will follow",
    )
    assert [m.get("Extension") for m in listing if m.name == "ListDialplan"] == ["_X.", "s"]
    assert listing[-1].name == "ShowDialPlanComplete"
    assert (missing.get("Response"), missing.get("Message")) == (
        "Error",
        "Did not find context from-nowhere",
    )
    assert {device: answer.get("Value") for device, answer in states.items()} == {
        "IAX2/101": "NOT_INUSE",
        "IAX2/102": "INVALID",
        "PJSIP/101": "INVALID",
    }


# -- check-config --live's check -------------------------------------------------------


@pytest.mark.parametrize(
    ("classes", "why"),
    [
        (SHIPPED, "Asterisk knows no PJSIP/101 (Anna), PJSIP/102 (Boris), PJSIP/103 (Vera)"),
        (None, "chan_pjsip is not loaded on this Asterisk (loaded: IAX2)"),
    ],
    ids=["shipped-user", "command-class"],
)
async def test_the_readme_trap_names_the_dial_template_and_its_fix(
    fake: FakeAsterisk, tmp_path: Path, classes: frozenset[str] | None, why: str
) -> None:
    """The default PJSIP/{extension} on an Asterisk without PJSIP is one line naming
    routing.dial_template and the IAX2 template that works instead."""
    iax2_only(fake, classes)
    found = await check_live(site(tmp_path, fake.port))
    [problem] = lines(found.problems)
    assert problem.startswith(TRAP + why)
    assert problem.endswith(FIX)


async def test_a_missing_endpoint_names_its_manager(fake: FakeAsterisk, tmp_path: Path) -> None:
    """A manager whose PJSIP endpoint does not exist is named, the others pass."""
    fake.setup.write_classes = SHIPPED
    fake.setup.devices = {"PJSIP/101", "PJSIP/102", "IAX2/*"}
    found = await check_live(site(tmp_path, fake.port))
    [problem] = lines(found.problems)
    assert problem.startswith(
        f"{TRAP}Asterisk knows no PJSIP/103 (Vera) (DEVICE_STATE is INVALID): "
        "chan_pjsip has no such endpoint; "
    )


async def test_a_managers_own_devices_are_checked(fake: FakeAsterisk, tmp_path: Path) -> None:
    """A device given in managers[].devices that Asterisk lacks names that key."""
    iax2_only(fake)

    def devices(raw: dict[str, Any]) -> None:
        raw["managers"][0]["devices"] = ["IAX2/101"]
        raw["managers"][1]["devices"] = ["SIP/102"]
        for manager in raw["managers"][2:]:
            manager["dial"] = f"IAX2/{manager['extension']}"

    found = await check_live(site(tmp_path, fake.port, change=devices))
    assert lines(found.problems) == [
        "managers[1].devices[0]: SIP/102 — chan_sip is not loaded on this Asterisk "
        "(loaded: IAX2); set managers[1].devices[0] to IAX2/102"
    ]


async def test_missing_contexts_are_named_with_their_key(
    fake: FakeAsterisk, tmp_path: Path
) -> None:
    """An inbound context, the routing snippet's and the ring-me context that are not in
    the dialplan are each a line naming the key; a pattern passes when a context matches."""
    for name in ("from-trunk", "callback", "pbx-tracker-inbound"):
        del fake.setup.contexts[name]
    fake.setup.add_context("from-trunk-sip-telco", "_X.")

    def contexts(raw: dict[str, Any]) -> None:
        raw["calls"]["inbound_contexts"] = ["from-trunk", "from-trunk-*", "from-gsm*"]

    found = await check_live(site(tmp_path, fake.port, change=contexts))
    assert [p.key for p in found.problems] == [
        "calls.inbound_contexts[0]",
        "calls.inbound_contexts[2]",
        "agi.enabled",
        "callbacks.ring_me.context",
    ]
    assert lines(found.problems)[1].startswith(
        "calls.inbound_contexts[2]: from-gsm* — the dialplan has no context matches from-gsm*"
    )
    assert "extensions_pbx_tracker.conf" in lines(found.problems)[2]


async def test_missing_recordings_folder_is_named(fake: FakeAsterisk, tmp_path: Path) -> None:
    """A recordings_dir that does not exist is a line naming recordings_dir."""
    settings = site(tmp_path, fake.port, PBX_TRACKER_RECORDINGS_DIR=str(tmp_path / "gone"))
    found = await check_live(settings)
    assert lines(found.problems) == [
        f"recordings_dir: {tmp_path / 'gone'} does not exist; set it to MixMonitor's folder "
        "(Asterisk's default: /var/spool/asterisk/monitor)"
    ]


NO_DAC_OVERRIDE = ("setpriv", "--bounding-set=-dac_override,-dac_read_search")
CHECK_RECORDINGS = (
    "import sys; from pathlib import Path; "
    "from pbx_tracker.selfcheck.checks import check_recordings; "
    "print(*check_recordings(Path(sys.argv[1])).problems, sep='\\n')"
)


@pytest.mark.skipif(
    os.geteuid() == 0 and shutil.which("setpriv") is None,
    reason="root reads every folder, and setpriv (util-linux) is missing to drop that",
)
async def test_unreadable_recordings_folder_is_named(tmp_path: Path) -> None:
    """A recordings_dir this user cannot read is a line naming recordings_dir and the user
    (as root, the check runs without root's right to read every folder, as the service's
    own user would)."""
    folder = tmp_path / "monitor"
    folder.mkdir(mode=0)
    argv = [sys.executable, "-c", CHECK_RECORDINGS, str(folder)]
    if os.geteuid() == 0:
        argv = [*NO_DAC_OVERRIDE, *argv]
    try:
        run = await run_process(argv, dict(os.environ), "the recordings check")
    finally:
        folder.chmod(0o755)
    assert run.code == 0, run.err
    [problem] = run.out.splitlines()
    assert problem.startswith(f"recordings_dir: {folder} is not readable by ")


async def test_a_user_without_reporting_is_told_which_class_to_add(
    fake: FakeAsterisk, tmp_path: Path
) -> None:
    """An AMI user without reporting is one line naming the actions it lacks and the class
    to add; what could not be checked is said in notes."""
    fake.setup.write_classes = frozenset({"originate"})
    found = await check_live(site(tmp_path, fake.port))
    [problem] = lines(found.problems)
    assert problem.startswith("ami.username: tracker may not run CoreShowChannels (")
    assert "add reporting to write= of [tracker] in manager.conf" in problem
    assert any("may not run ShowDialPlan" in note for note in found.notes)
    assert any("may not run Getvar" in note for note in found.notes)


async def test_login_events_leaving_out_dialplan_are_named(
    fake: FakeAsterisk, tmp_path: Path
) -> None:
    """ami.events without dialplan is a line naming ami.events."""
    found = await check_live(site(tmp_path, fake.port, PBX_TRACKER_AMI__EVENTS="call,agent"))
    assert lines(found.problems) == [
        'ami.events: "call,agent" leaves out the dialplan events the tracker reads; set '
        'ami.events: "on" (manager.conf\'s read= limits them anyway)'
    ]


async def test_cel_that_the_shipped_user_cannot_ask_is_a_note(
    fake: FakeAsterisk, tmp_path: Path
) -> None:
    """With the shipped AMI user CEL's events cannot be asked: a note; a CEL log in the
    shipped column order is no problem."""
    fake.setup.write_classes = SHIPPED
    found = await check_live(site(tmp_path, fake.port))
    assert found.problems == []
    assert any(note.startswith("CEL's events not checked: `cel show") for note in found.notes)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            lambda setup: setattr(setup, "cel_enabled", False),
            "cel.enabled: Asterisk's CEL logging is off: enable = yes in cel.conf",
        ),
        (
            lambda setup: setattr(setup, "cel_apps", ("all",)),
            "cel.enabled: CEL does not log the applications dial, queue, mixmonitor, set (",
        ),
        (
            lambda setup: setattr(setup, "cel_events", ("CHAN_START", "CHAN_END", "HANGUP")),
            "cel.enabled: CEL does not log ANSWER, APP_START, APP_END, BRIDGE_ENTER, ",
        ),
    ],
    ids=["cel-off", "apps-all", "few-events"],
)
async def test_cel_that_cannot_serve_recovery_names_the_fix(
    fake: FakeAsterisk, tmp_path: Path, change: Callable[[Any], None], problem: str
) -> None:
    """CEL off, ``apps = all`` (no recordings, queues or variables) or too few events is a
    line naming cel.conf's fix."""
    change(fake.setup)
    found = await check_live(site(tmp_path, fake.port))
    assert [line[: len(problem)] for line in lines(found.problems)] == [problem]


@pytest.mark.parametrize(
    ("breaks", "problem"),
    [
        (lambda cel: shutil.rmtree(cel.parent), "does not exist and cel_custom writes nothing"),
        (lambda cel: cel.unlink(), "is not written: load cel_custom with the mapping of"),
        (
            lambda cel: cel.write_text('"CHAN_START","2026-12-07 10:00:00","101"\n'),
            "is not in pbx-tracker's column order; use the mapping of",
        ),
    ],
    ids=["no-folder", "no-file", "other-mapping"],
)
async def test_a_cel_file_recovery_cannot_read_names_cel_file(
    fake: FakeAsterisk, tmp_path: Path, breaks: Callable[[Path], None], problem: str
) -> None:
    """No cel-custom folder, no file, or a file in another column order is one line naming
    cel.file and what to do."""
    settings = site(tmp_path, fake.port)
    breaks(settings.cel.file)
    found = await check_live(settings)
    [line] = lines(found.problems)
    assert line.startswith("cel.file: ") and problem in line


async def test_cel_recovery_turned_off_is_a_note(fake: FakeAsterisk, tmp_path: Path) -> None:
    """cel.enabled: false checks no CEL log and says what is given up."""
    settings = site(tmp_path, fake.port, PBX_TRACKER_CEL__ENABLED="false")
    settings.cel.file.unlink()
    found = await check_live(settings)
    assert found.problems == []
    assert any(note.startswith("CEL recovery is off (cel.enabled: false)") for note in found.notes)


async def test_asterisk_that_cannot_be_reached_names_the_address(tmp_path: Path) -> None:
    """A manager interface that is not listening is one line naming ami.host."""
    async with FakeAsterisk() as fake:
        port = fake.port
    found = await check_live(site(tmp_path, port))
    [problem] = lines(found.problems)
    assert problem.startswith(
        f"ami.host: cannot log in to Asterisk's manager interface at 127.0.0.1:{port} ("
    )


async def test_a_refused_login_never_shows_the_secret(fake: FakeAsterisk, tmp_path: Path) -> None:
    """A wrong secret is one line naming the AMI user, never the secret."""
    found = await check_live(site(tmp_path, fake.port, PBX_TRACKER_AMI__SECRET="wrong-s3cret"))
    [problem] = lines(found.problems)
    assert problem.startswith("ami.username: Asterisk at 127.0.0.1:")
    assert "wrong-s3cret" not in problem


def test_event_classes_are_learnt_from_the_events() -> None:
    """A session that gets the call events of captured calls and no dialplan event is told
    to read dialplan; one that gets both is fine."""
    events = trace_events(TRACES / "01_answered_simple.jsonl")
    calls_only = [e for e in events if "call" in e.get("Privilege", "").split(",")]
    watch = EventClassWatch("tracker")
    found = [problem for e in calls_only * 5 if (problem := watch.observe(e)) is not None]
    assert [problem.key for problem in found] == ["ami.username"]
    assert str(found[0]).startswith("ami.username: tracker does not read dialplan events: ")
    watch.reset()
    assert [watch.observe(e) for e in events] == [None] * len(events)
    assert watch.settled and watch.problem is None


# -- the daemon and /healthz --------------------------------------------------------------


def http_site(tmp_path: Path, port: int, **environ: str) -> Settings:
    """`site` on SQLite with the daemon's HTTP server on a free port."""
    return site(
        tmp_path,
        port,
        PBX_TRACKER_DATABASE__URL=f"sqlite:///{tmp_path / 'pbx-tracker.sqlite3'}",
        PBX_TRACKER_CALLS__DEAD_LETTERS=str(tmp_path / "dead-letters.jsonl"),
        PBX_TRACKER_DATABASE__SPILL_PATH=str(tmp_path / "spill.jsonl"),
        PBX_TRACKER_AGI__PORT="0",
        PBX_TRACKER_AMI__RECONNECT_INITIAL="0.05",
        PBX_TRACKER_AMI__RECONNECT_MAX="0.2",
        PBX_TRACKER_HTTP__ENABLED="true",
        PBX_TRACKER_HTTP__PORT="0",
        **environ,
    )


@asynccontextmanager
async def daemon_on(settings: Settings) -> AsyncIterator[RunningDaemon]:
    """The daemon on a migrated database, once its first self-check has run."""
    await asyncio.to_thread(upgrade_to_head, settings.database.url)
    async with start_daemon(settings, asyncio.Event()) as running:
        await asyncio.wait_for(running.daemon.self_check.done.wait(), WAIT)
        yield running


async def healthz(port: int) -> tuple[int, dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/healthz"
    async with aiohttp.ClientSession() as session, session.get(url) as answer:
        return answer.status, await answer.json()


async def daemon_health(daemon: Daemon) -> tuple[int, dict[str, Any]]:
    assert daemon.http is not None
    return await healthz(daemon.http.port)


async def test_the_daemon_checks_after_each_login_and_healthz_shows_it(
    fake: FakeAsterisk, tmp_path: Path
) -> None:
    """The README's trap is logged as one warning naming routing.dial_template and shown on
    /healthz (200, degraded); after Asterisk comes back with PJSIP it is gone."""
    iax2_only(fake)
    with capture_logs() as logs:
        async with daemon_on(http_site(tmp_path, fake.port)) as running:
            daemon = running.daemon
            status, body = await daemon_health(daemon)
            fake.setup.modules.add("chan_pjsip")
            await fake.restart()
            await until(lambda: daemon.listener.logins == 2, daemon.ami_changed)
            await asyncio.wait_for(daemon.self_check.done.wait(), WAIT)
            after = await daemon_health(daemon)
    assert status == 200
    assert body["status"] == "degraded"
    cel = body["parts"].pop("cel_recovery")
    assert body["parts"] == {
        "database": {"state": "ok"},
        "ami": {"state": "ok"},
        "fastagi": {"state": "ok", "detail": f"127.0.0.1:{daemon.agi.port if daemon.agi else 0}"},
    }
    assert cel["state"] == "ok" and cel["detail"].endswith(": 0 calls recovered")
    after[1]["parts"].pop("cel_recovery")
    [problem] = body["problems"]
    assert problem.startswith(TRAP) and problem.endswith(FIX)
    warned = [line for line in logs if line["event"] == "selfcheck.problem"]
    assert [(line["key"], line["problem"]) for line in warned] == [
        ("routing.dial_template", problem)
    ]
    assert after == (200, {**body, "status": "ok", "problems": []})


async def test_healthz_is_503_while_ami_is_down_and_200_when_it_is_back(
    fake: FakeAsterisk, tmp_path: Path
) -> None:
    """While Asterisk's manager interface is down /healthz answers 503 naming AMI; once the
    daemon is logged in again it answers 200."""
    async with daemon_on(http_site(tmp_path, fake.port)) as running:
        daemon = running.daemon
        up = await daemon_health(daemon)
        await fake.stop()
        await until(lambda: not daemon.listener.connected, daemon.ami_changed)
        down = await daemon_health(daemon)
        await fake.start()
        await until(lambda: daemon.listener.connected, daemon.ami_changed)
        back = await daemon_health(daemon)
    assert up[0] == 200 and up[1]["status"] == "ok"
    assert down[0] == 503
    assert down[1]["status"] == "down"
    assert down[1]["parts"]["ami"]["state"] == "down"
    assert down[1]["parts"]["ami"]["detail"].startswith("disconnected: ")
    assert down[1]["parts"]["database"] == {"state": "ok"}
    assert back[0] == 200 and back[1]["parts"]["ami"] == {"state": "ok"}


# SQLite opens a file lazily: the connection to the folder "succeeds", its first PRAGMA
# fails, and SQLAlchemy drops that connection unclosed; aiosqlite warns when it is collected
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_healthz_is_503_while_the_database_is_unreachable(
    fake: FakeAsterisk, tmp_path: Path
) -> None:
    """A database file that can no longer be opened makes /healthz answer 503 naming the
    database; once it is back, 200."""
    settings = http_site(tmp_path, fake.port)
    database = tmp_path / "pbx-tracker.sqlite3"
    async with daemon_on(settings) as running:
        daemon = running.daemon
        await daemon.writer.engine.dispose()  # no connection left open on the old file
        database.rename(tmp_path / "moved.sqlite3")
        database.mkdir()  # a folder where the file was: "unable to open database file"
        down = await daemon_health(daemon)
        database.rmdir()
        (tmp_path / "moved.sqlite3").rename(database)
        back = await daemon_health(daemon)
    gc.collect()  # the dropped connections are reported here, not in a later test
    assert down[0] == 503
    assert down[1]["status"] == "down"
    assert down[1]["parts"]["database"]["state"] == "down"
    assert "unable to open database file" in down[1]["parts"]["database"]["detail"]
    assert down[1]["parts"]["ami"] == {"state": "ok"}
    assert back[0] == 200


async def test_healthz_is_503_when_postgresql_does_not_answer() -> None:
    """A PostgreSQL server that refuses connections makes /healthz answer 503, and the
    answer never shows the database's password."""
    async with FakeAsterisk() as closed:
        port = closed.port  # nothing listens there any more
    engine = make_async_engine(f"postgresql://tracker:s3cret-pw@127.0.0.1:{port}/tracker")
    health = Health(lambda: ["routing.dial_template: a problem"])
    health.register("database", database_probe(engine), critical=True)
    health.register("fastagi", lambda: PartState("off"))
    try:
        async with http_server(health=health) as server:
            status, body = await healthz(server.port)
    finally:
        await engine.dispose()
    assert status == 503
    assert body["status"] == "down"
    assert body["parts"]["database"]["state"] == "down"
    assert body["parts"]["fastagi"] == {"state": "off"}
    assert body["problems"] == ["routing.dial_template: a problem"]
    assert "s3cret-pw" not in str(body)


async def test_a_session_without_dialplan_events_shows_on_healthz(
    fake: FakeAsterisk, tmp_path: Path
) -> None:
    """A daemon that logs in without the dialplan class is told so on /healthz once calls
    have come, as well as for its ami.events."""
    settings = http_site(tmp_path, fake.port, PBX_TRACKER_AMI__EVENTS="call,agent")
    events = trace_events(TRACES / "01_answered_simple.jsonl")
    async with daemon_on(settings) as running:
        daemon = running.daemon
        await fake.play(events * 6)
        await until(lambda: daemon.self_check.watch.problem is not None, daemon.handled)
        status, body = await daemon_health(daemon)
    assert status == 200
    assert [line.partition(":")[0] for line in body["problems"]] == ["ami.events", "ami.username"]
    assert body["problems"][1].startswith("ami.username: tracker does not read dialplan events")
