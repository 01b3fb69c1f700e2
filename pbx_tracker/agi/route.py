"""The ``route`` FastAGI handler: asks the router whom to ring, answers in dialplan variables.

The dialplan (config/asterisk/extensions_pbx_tracker.conf) runs
``AGI(agi://127.0.0.1:4573/route,DID,CALLER,LINKEDID,STEP,GROUP,TRIED)`` before
each ring attempt; every argument after the DID is optional, so the two-argument
form of older dialplans (``route,DID,CALLER``) works too.  The answer:

==================  ==========================================================
``ROUTE_STATUS``    ``OK`` (ring ``ROUTE_TO`` or ``ROUTE_QUEUE``) or ``MISSED``
``ROUTE_TO``        the dial string, e.g. ``PJSIP/101&PJSIP/102`` (empty for a queue)
``ROUTE_TIMEOUT``   ring seconds for ``Dial()`` / ``Queue()``
``ROUTE_QUEUE``     the Asterisk queue to use instead of ``Dial()``, or empty
``ROUTE_MANAGER``   the extensions rung, joined by ``&``
``ROUTE_GROUP``     the group this step belongs to (passed back on the next ask)
``ROUTE_TRIED``     every extension rung so far, joined by ``&`` (passed back)
``ROUTE_STRATEGY``  sticky, longest_idle, round_robin, ring_all, queue or missed
``ROUTE_REASON``    one readable line: why these managers, or why missed
``ROUTE_DECISION_n`` this ask's decision in one line, kept per step (n = 1, 2, ...)
``ROUTE_MISSED``    on MISSED: ``voicemail``, ``message`` or ``hangup``
``ROUTE_VOICEMAIL`` on MISSED: the box (``100@default``), ``ROUTE_MESSAGE`` the sound
``TRACK_SOURCE``    the number's source from the config, unless the dialplan set one
``TRACK_RECORDING`` the recording's full path (first ask, unless the dialplan set one)
==================  ==========================================================

The ROUTE_* values also reach the call record's ``variables`` (AMI ``VarSet``),
so every decision can be read back later.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from pbx_tracker.phones import normalize_number
from pbx_tracker.routing.router import RouteDecision, Router, RouteRequest

if TYPE_CHECKING:
    from pbx_tracker.agi.session import AgiSession

log = structlog.get_logger(__name__)

_NO_VALUE = ("", "unknown", "anonymous", "none", "(null)")
_NOT_DIGITS = re.compile(r"\D")


def recording_path(
    recordings_dir: Path, did: str, caller: str | None, uniqueid: str, at: float
) -> str:
    """``<dir>/YYYY/MM/DD/in-<did>-<caller>-<YYYYmmdd-HHMMSS>-<uniqueid>.wav`` (UTC)."""
    day, clock = time.strftime("%Y/%m/%d %Y%m%d-%H%M%S", time.gmtime(at)).split()
    who = _NOT_DIGITS.sub("", caller or "") or "anonymous"
    number = _NOT_DIGITS.sub("", did) or "unknown"
    return f"{recordings_dir}/{day}/in-{number}-{who}-{clock}-{uniqueid}.wav"


def _decision_line(decision: RouteDecision) -> str:
    """``ring 101&102 (longest_idle in sales: ...)``, ``queue sales (...)``, ``missed (...)``."""
    if decision.action == "dial":
        target = f"ring {'&'.join(decision.managers)}"
    elif decision.action == "queue":
        target = f"queue {decision.queue}"
    else:
        target = "missed"
    return f"{target} ({decision.reason})"


def _arg(args: list[str], index: int) -> str:
    value = args[index].strip() if index < len(args) else ""
    return "" if value.lower() in _NO_VALUE else value


def _step(text: str) -> int:
    return int(text) if text.isdigit() and int(text) > 0 else 1


class RouteHandler:
    """Answers ``agi://…/route``: one router decision per ring attempt."""

    def __init__(
        self,
        router: Router,
        recordings_dir: Path,
        clock: Callable[[], float] = time.time,
        states_known: Callable[[], bool] = lambda: True,
    ) -> None:
        """``recordings_dir``: where the recordings it names go; ``states_known`` says
        whether the managers' states are live (AMI connected)."""
        self.recordings_dir = recordings_dir
        self.router = router
        self.clock = clock
        self.states_known = states_known

    def request_of(self, session: AgiSession) -> RouteRequest:
        """The call as the dialplan described it (arguments, else the AGI environment)."""
        agi, args = session.request, session.request.args
        did = _arg(args, 0) or agi.extension
        caller = _arg(args, 1) or agi.caller
        tried = tuple(ext for ext in _arg(args, 5).split("&") if ext)
        return RouteRequest(
            did=did,
            caller=normalize_number(caller, self.router.directory.region) if caller else None,
            call_id=_arg(args, 2) or agi.uniqueid,
            group=_arg(args, 4) or None,
            tried=tried,
            step=_step(_arg(args, 3)),
        )

    async def __call__(self, session: AgiSession) -> None:
        request = self.request_of(session)
        decision = await self.router.route(request)
        if not self.states_known():
            reason = f"{decision.reason}; phone states may be stale: no AMI connection"
            decision = dataclasses.replace(decision, reason=reason)
        if request.step == 1:
            await self._label_call(session, request, decision)
        for name, value in self._answer(request, decision).items():
            await session.set_variable(name, value)
        target = decision.dial or decision.queue or f"missed ({decision.reason})"
        await session.verbose(f"route {request.did} -> {target}", 1)
        log.info(
            "agi.route_decided",
            call_id=request.call_id,
            did=request.did,
            step=request.step,
            action=decision.action,
            managers="&".join(decision.managers),
            group=decision.group,
            strategy=decision.strategy,
            reason=decision.reason,
        )

    async def _label_call(
        self, session: AgiSession, request: RouteRequest, decision: RouteDecision
    ) -> None:
        """First ask: the source and the recording's file, unless the dialplan chose them."""
        if decision.source and not await session.get_variable("TRACK_SOURCE"):
            await session.set_variable("__TRACK_SOURCE", decision.source)
        if not await session.get_variable("TRACK_RECORDING"):
            path = recording_path(
                self.recordings_dir,
                request.did,
                request.caller,
                session.request.uniqueid or request.call_id,
                self.clock(),
            )
            await session.set_variable("__TRACK_RECORDING", path)

    @staticmethod
    def _answer(request: RouteRequest, decision: RouteDecision) -> dict[str, str]:
        tried = dict.fromkeys((*request.tried, *decision.managers))
        answer = {
            "ROUTE_STATUS": "MISSED" if decision.action == "missed" else "OK",
            "ROUTE_TO": decision.dial if decision.action == "dial" else "",
            "ROUTE_TIMEOUT": str(decision.timeout),
            "ROUTE_QUEUE": decision.queue or "",
            "ROUTE_MANAGER": "&".join(decision.managers),
            "ROUTE_GROUP": decision.group or "",
            "ROUTE_TRIED": "&".join(tried),
            "ROUTE_STRATEGY": decision.strategy,
            "ROUTE_REASON": decision.reason,
            f"ROUTE_DECISION_{request.step}": _decision_line(decision),
        }
        if decision.missed is not None:
            answer["ROUTE_MISSED"] = decision.missed.action
            answer["ROUTE_VOICEMAIL"] = decision.missed.voicemail_box or ""
            answer["ROUTE_MESSAGE"] = decision.missed.message or ""
        return answer
