"""The call card's record: who called, the number they dialled and where it came from
(source, UTM, attribution and its confidence), how the call went, and its flags.

Every value is stored data, so hostile: each goes through `escape`.  Also the
small wordings the card's other parts share (`manager_name`, `moment`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pbx_tracker.phones import display_number, is_dialable
from pbx_tracker.web.pages.calls import REASONS, SPAM_REASONS
from pbx_tracker.web.pages.common import Pages
from pbx_tracker.web.pages.layout import escape as _e

__all__ = ["manager_name", "moment", "number_text", "record_html", "seconds_text"]

METHODS = {
    "static": "the number's own source",
    "session": "the website visit shown this number",
    "ambiguous": "several visits were shown this number: none chosen",
    "unattributed": "no visit matched",
}


def manager_name(extension: str | None, managers: Mapping[str, str]) -> str:
    """``Anna Petrova (101)`` for a declared manager, else the extension as stored."""
    if not extension:
        return ""
    name = managers.get(extension)
    return f"{name} ({extension})" if name else extension


def number_text(number: str | None, region: str) -> str:
    if not number:
        return ""
    return display_number(number, region) if is_dialable(number) else number


def moment(at: datetime | None, pages: Pages, *, day: bool = False) -> str:
    """``14:05:09`` (or ``Tue 10 Mar 2026 14:05:09`` with ``day``) in the reports' zone."""
    if at is None:
        return ""
    local = at.astimezone(pages.rules.zone)
    return f"{local:%a %d %b %Y %H:%M:%S}" if day else f"{local:%H:%M:%S}"


def seconds_text(seconds: float | None) -> str:
    whole = max(0, int(seconds or 0))
    return f"{whole} s" if whole < 60 else f"{whole // 60} min {whole % 60:02d} s"


def _facts(items: list[tuple[str, str]], css: str) -> str:
    """A list of (label, text) as a ``<dl>``; empty texts are left out."""
    shown = "".join(
        f'<div class="fact"><dt>{_e(label)}</dt><dd>{_e(text)}</dd></div>'
        for label, text in items
        if text
    )
    return f'<dl class="facts {css}">{shown}</dl>' if shown else ""


def _touch(detail: Mapping[str, Any], which: str) -> str:
    touch = detail.get(which)
    if not isinstance(touch, Mapping):
        return ""
    labels = (touch.get("source"), touch.get("medium"), touch.get("campaign"))
    return " / ".join(str(label) for label in labels if label)


def _confidence(value: float | None) -> str:
    return "" if value is None else f"{round(float(value) * 100)} %"


def _origin(call: Any) -> str:
    """Where the call came from: source, medium, campaign, keyword; UTM; attribution."""
    detail = call.attribution if isinstance(call.attribution, Mapping) else {}
    method = call.attribution_method or ""
    utm = (call.utm_source, call.utm_medium, call.utm_campaign, call.utm_term, call.utm_content)
    tags = ("source", "medium", "campaign", "term", "content")
    origin = [
        ("Source", call.source or "no source"),
        ("Medium", call.medium or ""),
        ("Campaign", call.campaign or ""),
        ("Keyword", call.utm_term or ""),
    ]
    attribution = [
        (
            "UTM",
            " · ".join(f"{tag}={value}" for tag, value in zip(tags, utm, strict=True) if value),
        ),
        ("Attributed by", METHODS.get(method, method)),
        ("Confidence", _confidence(call.attribution_confidence)),
        ("Why", str(detail.get("reason") or "")),
        ("First touch", _touch(detail, "first_touch")),
        ("Last touch", _touch(detail, "last_touch")),
    ]
    return (
        '<section class="card card-part" aria-labelledby="origin-title">'
        '<h2 id="origin-title">Where it came from</h2>'
        f"{_facts(origin, 'origin')}{_facts(attribution, 'attribution')}</section>"
    )


def _outcome(call: Any, pages: Pages) -> list[tuple[str, str]]:
    answered = call.status == "answered"
    status = "Answered" if answered else "Missed"
    reason = "" if answered else REASONS.get(call.missed_reason or "", call.missed_reason or "")
    on = number_text(call.answered_number, pages.region)
    flags = [
        "target call" if call.is_target else "",
        "first-time caller" if call.first_time_caller else "",
        "recovered from Asterisk's CEL log" if call.recovered_from == "cel" else "",
    ]
    spam = ""
    if call.spam:
        spam = SPAM_REASONS.get(call.spam_reason or "manual", call.spam_reason or "")
    return [
        ("Status", f"{status}: {reason}" if reason else status),
        ("Answered by", manager_name(call.answered_by, pages.managers)),
        (
            "Answered on",
            on if on and (call.answered_via == "number" or not call.answered_by) else "",
        ),
        ("Transferred to", manager_name(call.transferred_to, pages.managers)),
        ("Rang", seconds_text(call.ring_seconds)),
        ("Talked", seconds_text(call.talk_seconds) if answered else ""),
        ("Queue", call.queue or ""),
        ("Spam", spam),
        ("Flags", ", ".join(flag for flag in flags if flag)),
    ]


def record_html(call: Any, pages: Pages) -> str:
    """The record: the caller and the number dialled, the outcome, then the origin."""
    caller = number_text(call.caller, pages.region) or "Hidden number"
    who = [
        ("Caller", caller),
        ("Caller's name", call.caller_name or ""),
        ("Number dialled", number_text(call.did, pages.region)),
        ("Started", moment(call.started_at, pages, day=True)),
    ]
    return (
        '<section class="card card-part" aria-labelledby="record-title">'
        '<h2 id="record-title">The call</h2>'
        f"{_facts(who, 'who')}{_facts(_outcome(call, pages), 'outcome')}</section>"
        f"{_origin(call)}"
    )
