"""The self-check run live: after every AMI login of the daemon, and once by
``pbx-tracker check-config --live``.

`SelfCheckRunner` runs `self_check.self_check` in the background after each
login (the previous run is cancelled), logs each problem as one warning
``selfcheck.problem`` naming the key and the fix, and keeps them for
``/healthz`` until the next run.  It also watches the events' ``Privilege:``
headers (`EventClassWatch`): no AMI action tells which classes ``read =``
grants, and a Login without them succeeds alike.

`check_live` logs in once with the config's AMI user, as the daemon does,
checks, and logs off.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import TYPE_CHECKING

import structlog

from pbx_tracker.ami.connection import AmiListener, AmiLoginError
from pbx_tracker.ami.live_asterisk import Findings, Problem, Send
from pbx_tracker.selfcheck.checks import MANAGER_CONF, self_check

if TYPE_CHECKING:
    from pbx_tracker.config import Settings

__all__ = ["EventClassWatch", "SelfCheckRunner", "check_live"]

log = structlog.get_logger(__name__)

HANGUPS_WITHOUT_DIALPLAN = 10  # channels ended, none ran the dialplan: dialplan is not read
DIALPLAN_WITHOUT_CALL = 50
LOGIN_WAIT_EXTRA = 5.0  # seconds beyond ami.connect_timeout


class EventClassWatch:
    """Whether this session gets the call and dialplan events, from what arrives.

    Every call runs the dialplan, so ``HANGUPS_WITHOUT_DIALPLAN`` channels hung
    up with no dialplan event (VarSet, Newexten) mean the user does not read
    that class, and many dialplan events with no call event the reverse.  Once
    both were seen it stops looking (`settled`) until `reset` (a new login).
    """

    def __init__(self, username: str) -> None:
        self.username = username
        self.reset()

    def reset(self) -> None:
        self.settled = False
        self.problem: Problem | None = None
        self._hangups = self._calls = self._dialplan = 0

    def observe(self, fields: Mapping[str, str]) -> Problem | None:
        """The problem the first time this event makes it certain, else None."""
        classes = fields.get("Privilege", "").split(",")
        if "dialplan" in classes:
            self._dialplan += 1
        if "call" in classes:
            self._calls += 1
            self._hangups += fields.get("Event") == "Hangup"
        if self._calls and self._dialplan:
            self.settled, self.problem = True, None
            return None
        if self.problem is None:
            self.problem = self._verdict()
            return self.problem
        return None

    def _verdict(self) -> Problem | None:
        if self._hangups >= HANGUPS_WITHOUT_DIALPLAN:
            missing = "dialplan"
            why = (
                f"{self._hangups} channels hung up and no dialplan event came (VarSet, "
                "Newexten): recordings, TRACK_* variables and DIALSTATUS go unseen"
            )
        elif self._dialplan >= DIALPLAN_WITHOUT_CALL:
            missing = "call"
            why = f"{self._dialplan} dialplan events and no call event came: no call is seen"
        else:
            return None
        user = self.username
        fix = f"add {missing} to read= of [{user}] in {MANAGER_CONF}"
        return Problem("ami.username", f"{user} does not read {missing} events: {why}; {fix}")


class SelfCheckRunner:
    """The self-check after each AMI login, and the event classes as events come."""

    def __init__(self, settings: Settings, send: Send) -> None:
        self._settings = settings
        self._send = send
        self.findings: Findings | None = None  # of the last run that finished
        self.watch = EventClassWatch(settings.ami.username)
        self.done = asyncio.Event()  # set when a run finishes (tests wait on it)
        self._task: asyncio.Task[None] | None = None

    @property
    def problems(self) -> list[str]:
        """Every problem known now, one line each."""
        found = [] if self.findings is None else [str(p) for p in self.findings.problems]
        return found + ([str(self.watch.problem)] if self.watch.problem else [])

    def logged_in(self) -> None:
        """Start a run (cancelling one still going); the event classes are learnt anew."""
        self.watch.reset()
        self.done.clear()
        if self._task is not None:
            self._task.cancel()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="self-check")

    def observe(self, fields: Mapping[str, str]) -> None:
        """One event of the session (cheap once both classes were seen)."""
        if self.watch.settled:
            return
        problem = self.watch.observe(fields)
        if problem is not None:
            log.warning("selfcheck.problem", key=problem.key, problem=str(problem))

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        try:
            findings = await self_check(self._settings, self._send)
        except (ConnectionError, TimeoutError) as error:  # the next login runs it again
            log.info("selfcheck.interrupted", reason=str(error) or type(error).__name__)
            return
        except Exception:
            log.exception("selfcheck.failed")
            return
        self.findings = findings
        for problem in findings.problems:
            log.warning("selfcheck.problem", key=problem.key, problem=str(problem))
        for note in findings.notes:
            log.info("selfcheck.not_checked", note=note)
        log.info("selfcheck.done", problems=len(findings.problems))
        self.done.set()


async def check_live(settings: Settings) -> Findings:
    """`check-config --live`: log in once as the daemon does, check, log off."""
    statuses: asyncio.Queue[tuple[str, bool]] = asyncio.Queue()
    listener = AmiListener(settings.ami, on_status=lambda text, up: statuses.put_nowait((text, up)))
    session = asyncio.create_task(listener.run())
    try:
        return await _check_once(settings, listener, session, statuses)
    finally:
        await listener.close()
        with contextlib.suppress(Exception):
            await session


async def _check_once(
    settings: Settings,
    listener: AmiListener,
    session: asyncio.Task[None],
    statuses: asyncio.Queue[tuple[str, bool]],
) -> Findings:
    findings = Findings()
    ami = settings.ami
    status = asyncio.create_task(statuses.get())
    await asyncio.wait(
        {status, session},
        timeout=2 * ami.connect_timeout + LOGIN_WAIT_EXTRA,
        return_when=asyncio.FIRST_COMPLETED,
    )
    status.cancel()
    if session.done() and isinstance(session.exception(), AmiLoginError):
        findings.add(
            "ami.username",
            f"Asterisk at {ami.host}:{ami.port} refused the login of {ami.username}; "
            "give the AMI secret of that user in manager.conf (ami.secret)",
        )
    elif not listener.connected:
        reason = status.result()[0] if status.done() and not status.cancelled() else "no answer"
        findings.add(
            "ami.host",
            f"cannot log in to Asterisk's manager interface at {ami.host}:{ami.port} ({reason}); "
            "check ami.host and ami.port, and manager.conf's [general] enabled, port, bindaddr",
        )
    else:
        findings.extend(await self_check(settings, listener.send_action))
    return findings
