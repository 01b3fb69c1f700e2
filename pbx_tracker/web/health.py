"""``GET /healthz``: the state of each part of the daemon and the self-check's problems.

Parts register a probe (`Health.register`): the daemon registers the
database, AMI, FastAGI and CEL recovery ("off" when ``cel.enabled`` is
false).  A probe answers a `PartState`; it may be a coroutine, is given
`PROBE_SECONDS`, and one in flight is shared by the requests that come
meanwhile (a busy monitor does not multiply database queries).  A critical
part that is down (AMI, the database) makes the answer HTTP 503, anything
else 200.

The body is JSON and carries no secret: ``{"status": "ok" | "degraded" |
"down", "parts": {"database": {"state": "ok"}, "ami": {"state": "down",
"detail": "disconnected: ..."}, ...}, "problems": ["routing.dial_template:
..."]}``.  ``status`` is "down" with 503, "degraded" when a part that is not
critical is down or the self-check found problems, else "ok".
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict
from sqlalchemy.ext.asyncio import AsyncEngine

from pbx_tracker.store.engine import DatabaseUnavailableError, check_database, describe_error

__all__ = [
    "HEALTH",
    "Health",
    "HealthAnswer",
    "PartAnswer",
    "PartState",
    "database_probe",
]

PROBE_SECONDS = 3.0
State = Literal["ok", "down", "off", "not configured"]
Probe = Callable[[], "PartState | Awaitable[PartState]"]


@dataclass(frozen=True, slots=True)
class PartState:
    """How one part is: ok, down (``detail`` says why), off, or not configured."""

    state: State
    detail: str | None = None


class PartAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state: State
    detail: str | None = None


class HealthAnswer(BaseModel):
    """The answer of ``/healthz``; ``parts`` and ``problems`` only from the daemon."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["ok", "degraded", "down"]
    parts: dict[str, PartAnswer] | None = None
    problems: list[str] | None = None


@dataclass(frozen=True, slots=True)
class _Part:
    probe: Probe
    critical: bool


class Health:
    """The daemon's parts and its self-check's problems, as ``/healthz`` tells them."""

    def __init__(self, problems: Callable[[], Sequence[str]] = tuple) -> None:
        self._problems = problems
        self._parts: dict[str, _Part] = {}
        self._probing: dict[str, asyncio.Future[PartState]] = {}

    def register(self, name: str, probe: Probe, *, critical: bool = False) -> None:
        """Add a part, or replace the one of that name (e.g. a placeholder)."""
        self._parts[name] = _Part(probe, critical)

    async def answer(self) -> tuple[int, HealthAnswer]:
        """The HTTP status and the body: 503 while a critical part is down."""
        names = list(self._parts)
        states = await asyncio.gather(*(self._state(name) for name in names))
        parts = dict(zip(names, states, strict=True))
        down = [name for name, state in parts.items() if state.state == "down"]
        problems = list(self._problems())
        if any(self._parts[name].critical for name in down):
            status: Literal["ok", "degraded", "down"] = "down"
        else:
            status = "degraded" if down or problems else "ok"
        body = HealthAnswer(
            status=status,
            parts={name: PartAnswer(state=s.state, detail=s.detail) for name, s in parts.items()},
            problems=problems,
        )
        return (503 if status == "down" else 200), body

    async def _state(self, name: str) -> PartState:
        probing = self._probing.get(name)
        if probing is None:
            probing = asyncio.ensure_future(self._probe(self._parts[name].probe))
            self._probing[name] = probing
            probing.add_done_callback(lambda _: self._probing.pop(name, None))
        return await asyncio.shield(probing)

    @staticmethod
    async def _probe(probe: Probe) -> PartState:
        try:
            async with asyncio.timeout(PROBE_SECONDS):
                answer = probe()
                return await answer if inspect.isawaitable(answer) else answer
        except TimeoutError:
            return PartState("down", f"no answer within {PROBE_SECONDS:g} s")
        except Exception as error:
            return PartState("down", describe_error(error))


HEALTH = web.AppKey[Health | None]("health")


def database_probe(engine: AsyncEngine) -> Probe:
    """``SELECT 1`` on the daemon's engine: ok, or down with the driver's reason."""

    async def probe() -> PartState:
        try:
            await check_database(engine)
        except DatabaseUnavailableError as error:
            return PartState("down", describe_error(error.__cause__ or error))
        return PartState("ok")

    return probe


async def healthz(request: web.Request) -> web.Response:
    """Each part's state and the self-check's problems; 503 while AMI or the database
    is down.  An app without the daemon's `Health` answers ``{"status": "ok"}``."""
    health = request.app.get(HEALTH)
    if health is None:
        return web.json_response(HealthAnswer(status="ok").model_dump(exclude_none=True))
    status, body = await health.answer()
    return web.json_response(body.model_dump(exclude_none=True), status=status)
