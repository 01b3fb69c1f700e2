"""The call card's timeline and routing: what happened to the call, in order, and why the
router rang whom.

The timeline: the call comes in, each phone that rang (who, when, for how long,
how that leg ended), the answer, the transfer, the end; then, when the reader
may see it, what happened to the call's callback task (`callback_lines`).
Routing: the ``ROUTE_DECISION_n`` lines the ``route`` FastAGI handler left in
the call's variables, in step order, then ``ROUTE_STRATEGY`` / ``ROUTE_REASON``
(the last ask's).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pbx_tracker.web.pages.call_record import manager_name, number_text, seconds_text
from pbx_tracker.web.pages.calls import REASONS
from pbx_tracker.web.pages.common import Pages
from pbx_tracker.web.pages.layout import escape as _e

__all__ = ["Line", "call_lines", "routing_html", "routing_steps", "timeline_html"]

OUTCOMES = {
    "answer": "answered",
    "noanswer": "no answer",
    "busy": "busy",
    "chanunavail": "unavailable",
    "congestion": "unavailable",
    "cancel": "cancelled",
    "not_accepted": "not accepted",
    "forwarded": "forwarded the call",
}
_DECISION = re.compile(r"ROUTE_DECISION_([0-9]{1,4})")


@dataclass(frozen=True, slots=True)
class Line:
    """One step of the timeline: when, what kind (a CSS class), and what in words."""

    at: datetime | None
    kind: str
    text: str


def _who(attempt: Any, pages: Pages) -> str:
    if attempt.manager:
        name = manager_name(attempt.manager, pages.managers)
        on = number_text(attempt.number, pages.region) if attempt.via == "number" else ""
        return f"{name} on {on}" if on else name
    return number_text(attempt.number, pages.region) or attempt.channel or "a phone"


def _ring_line(attempt: Any, pages: Pages) -> Line:
    outcome = OUTCOMES.get(attempt.outcome or "", attempt.outcome or "still ringing")
    took = ""
    if attempt.ended_at is not None:
        took = f" for {seconds_text((attempt.ended_at - attempt.rang_at).total_seconds())}"
    queue = f" (queue {attempt.queue})" if attempt.queue else ""
    text = f"Rang {_who(attempt, pages)}{queue}{took}: {outcome}"
    return Line(attempt.rang_at, f"ring ring-{outcome.split()[0]}", text)


def call_lines(call: Any, attempts: Iterable[Any], pages: Pages) -> list[Line]:
    """The call's own steps in time order (a step with no time stays where it is)."""
    did = number_text(call.did, pages.region)
    steps = [Line(call.started_at, "start", f"Came in on {did}" if did else "Came in")]
    steps += [_ring_line(attempt, pages) for attempt in attempts]
    if call.status == "answered":
        who = manager_name(call.answered_by, pages.managers) or number_text(
            call.answered_number, pages.region
        )
        steps.append(Line(call.answered_at, "answer", f"Answered by {who}" if who else "Answered"))
        if call.transferred_to:
            to = manager_name(call.transferred_to, pages.managers)
            steps.append(Line(call.answered_at, "transfer", f"Transferred to {to}"))
        end = f"Ended after {seconds_text(call.talk_seconds)} of talk"
    else:
        reason = REASONS.get(call.missed_reason or "", call.missed_reason or "")
        end = f"Ended: missed ({reason})" if reason else "Ended: missed"
    steps.append(Line(call.ended_at, "end", end))
    order = {id(step): index for index, step in enumerate(steps)}
    first = call.started_at
    return sorted(steps, key=lambda step: (step.at or first, order[id(step)]))


def timeline_html(lines: Iterable[Line], pages: Pages, started: datetime) -> str:
    """The timeline as an ordered list; a step on another day than the call shows its date."""
    zone = pages.rules.zone
    day = started.astimezone(zone).date()
    items = []
    for line in lines:
        local = line.at.astimezone(zone) if line.at is not None else None
        when = "" if local is None else f"{local:%H:%M:%S}"
        if local is not None and local.date() != day:
            when = f"{local:%d %b %H:%M}"
        items.append(
            f'<li class="step step-{_e(line.kind)}"><time class="step-at">{_e(when)}</time>'
            f'<span class="step-text">{_e(line.text)}</span></li>'
        )
    return (
        '<section class="card card-part" aria-labelledby="timeline-title">'
        '<h2 id="timeline-title">Timeline</h2>'
        f'<ol class="timeline" id="timeline">{"".join(items)}</ol></section>'
    )


def routing_steps(variables: Mapping[str, Any] | None) -> list[str]:
    """The router's decisions in step order, then the last strategy and reason."""
    found = variables if isinstance(variables, Mapping) else {}
    steps = sorted(
        (int(match.group(1)), str(value))
        for name, value in found.items()
        if (match := _DECISION.fullmatch(str(name))) and value
    )
    lines = [f"Step {step}: {text}" for step, text in steps]
    strategy, reason = found.get("ROUTE_STRATEGY"), found.get("ROUTE_REASON")
    if strategy or reason:
        head = f"Strategy {strategy}" if strategy else "Reason"
        lines.append(f"{head} — {reason}" if reason else head)
    return lines


def routing_html(variables: Mapping[str, Any] | None) -> str:
    lines = routing_steps(variables)
    if lines:
        items = "".join(f'<li class="route-step">{_e(line)}</li>' for line in lines)
        shown = f'<ol class="routing" id="routing">{items}</ol>'
    else:
        shown = '<p class="muted" id="routing">The router was not asked for this call.</p>'
    return (
        '<section class="card card-part" aria-labelledby="routing-title">'
        f'<h2 id="routing-title">Routing: whom and why</h2>{shown}</section>'
    )
