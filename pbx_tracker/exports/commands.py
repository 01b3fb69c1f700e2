"""`pbx-tracker export metrica|ga4`: the calls of a period for the ad platforms.

Each command reads the period's calls (dates both included, days cut in the
reports' zone: ``routing.timezone``, else the machine's) with their visits,
writes or sends them, and answers one line saying how many went out and how
many were left out and why.  Every problem is a `CommandError` with a
one-line message.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, tzinfo
from pathlib import Path

from pbx_tracker.command_error import CommandError
from pbx_tracker.exports.calls import ExportedCall, load_calls, parse_period
from pbx_tracker.exports.ga4 import Ga4SendError, ga4_events, send_events, write_ga4
from pbx_tracker.exports.metrica import metrica_file, write_metrica
from pbx_tracker.exports.settings import ExportSettings
from pbx_tracker.store.engine import in_transaction

__all__ = ["export_ga4", "export_metrica"]

GA4_NOT_CONFIGURED = (
    "GA4 is not configured: set exports.ga4.measurement_id and exports.ga4.api_secret "
    "(or PBX_TRACKER_EXPORTS__GA4__API_SECRET)"
)


async def export_metrica(
    database_url: str,
    exports: ExportSettings,
    first: str,
    last: str,
    out: Path,
    *,
    zone: tzinfo | None,
    now: datetime,
) -> str:
    """Write the Metrica offline-calls CSV of the dates ``first`` to ``last`` (days of
    ``zone``, None: the machine's) to ``out``."""
    calls = await _calls(database_url, first, last, zone)
    file = metrica_file(calls, tag=exports.metrica.tag, now=now)
    _write(out, lambda: write_metrica(out, file))
    return (
        f"{_calls_text(file.written)} written to {out}; "
        f"{file.too_old} older than 21 days left out (Metrica joins calls to visits "
        f"only within 21 days); {file.without_client_id} without a Metrica ClientId left out"
        f"{_spam_text(file.spam)}"
    )


async def export_ga4(
    database_url: str,
    exports: ExportSettings,
    first: str,
    last: str,
    *,
    out: Path | None,
    zone: tzinfo | None,
    target_seconds: int,
    now: datetime,
) -> str:
    """Write the GA4 events of the dates ``first`` to ``last`` (days of ``zone``, None:
    the machine's) to ``out``, or send them (``out`` None); a call answered and talked
    ``target_seconds`` is a target call."""
    ga4 = exports.ga4
    if out is None and not ga4.configured:
        raise CommandError(GA4_NOT_CONFIGURED)
    calls = await _calls(database_url, first, last, zone)
    found = ga4_events(calls, target_seconds=target_seconds, now=now)
    if out is not None:
        _write(out, lambda: write_ga4(out, found.events))
        done = f"{_events_text(len(found.events))} written to {out}"
    else:
        try:
            sent = await send_events(ga4, found.events)
        except Ga4SendError as error:
            raise CommandError(str(error)) from None
        done = f"{_events_text(sent)} sent to GA4"
    return (
        f"{done}; {found.too_old} older than 72 hours left out (GA4 accepts events "
        f"only 72 hours back); {found.without_client_id} without a GA client id left out"
        f"{_spam_text(found.spam)}"
    )


def _spam_text(count: int) -> str:
    """The spam calls left out (said only when there are some)."""
    if not count:
        return ""
    return f"; {count} spam {'call' if count == 1 else 'calls'} left out"


async def _calls(
    database_url: str, first: str, last: str, zone: tzinfo | None
) -> list[ExportedCall]:
    period = parse_period(first, last, zone)
    return await in_transaction(database_url, lambda conn: load_calls(conn, period))


def _write(path: Path, write: Callable[[], None]) -> None:
    try:
        write()
    except OSError as error:
        raise CommandError(f"cannot write {path}: {error.strerror or error}") from None


def _calls_text(count: int) -> str:
    return f"{count} call" + ("" if count == 1 else "s")


def _events_text(count: int) -> str:
    return f"{count} event" + ("" if count == 1 else "s")
