"""The Yandex Metrica offline-calls file: one CSV row per call with a Metrica ClientId.

Format (Metrica's "Sending call data" / ``upload_calls`` column spec; the file
is uploaded in Metrica under "Conversions upload" or through
``POST /management/v1/counter/{counterId}/offline_conversions/upload_calls``
with ``client_id_type=CLIENT_ID``): UTF-8, comma-separated, the column names in
the first line::

    ClientId,DateTime,PhoneNumber,TalkDuration,HoldDuration,CallMissed,Tag,FirstTimeCaller,URL

- ``ClientId``: the Metrica ClientID of the visit the call was credited to
  (``visits.ym_client_id``, sent by the website snippet);
- ``DateTime``: when the call started, a Unix timestamp in seconds (counted
  from 1970-01-01 00:00 UTC, as Metrica asks: one moment whatever the zone of
  the site, the counter or the PBX; the zone only decides which day's file a
  call is in);
- ``PhoneNumber``: the caller in E.164 (``+79161234567``), empty when hidden;
- ``TalkDuration``: talk seconds; ``HoldDuration``: seconds it rang before it
  was answered (or given up);
- ``CallMissed``: 1 missed, 0 answered;
- ``Tag``: by ``exports.metrica.tag``: ``source_campaign`` (default)
  ``source:campaign``, or the source alone when there is no campaign;
  ``source``; ``campaign``; ``none`` (empty);
- ``FirstTimeCaller``: 1 first call from this number, 0 a repeat caller,
  empty when unknown (a hidden number);
- ``URL``: the visit's landing page.

Text from outside (a tag, a landing page, a ClientId or a caller id that is
no number) starting with ``=``, ``+``, ``-``, ``@``, tab or CR gets a leading
``'`` so that a spreadsheet shows it instead of running it (OWASP's CSV
Injection; `pbx_tracker.spreadsheet`); the numbers, E.164 included, are written
as they are.

Calls without a ClientId cannot be joined to a Metrica visit and are left
out.  Metrica joins a call only to a visit of the last 21 days before the
upload, so calls that started more than 21 days before the export are left
out too (and counted): run the export daily.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from pbx_tracker.exports.calls import ExportedCall, kept_calls
from pbx_tracker.exports.settings import MetricaTag
from pbx_tracker.spreadsheet import safe_cell

__all__ = ["COLUMNS", "METRICA_WINDOW", "MetricaFile", "metrica_file", "write_metrica"]

COLUMNS = (
    "ClientId",
    "DateTime",
    "PhoneNumber",
    "TalkDuration",
    "HoldDuration",
    "CallMissed",
    "Tag",
    "FirstTimeCaller",
    "URL",
)
METRICA_WINDOW = timedelta(days=21)


@dataclass(frozen=True, slots=True)
class MetricaFile:
    """The rows of the file (header first) and what was left out."""

    rows: list[list[str]]
    without_client_id: int
    too_old: int
    spam: int = 0

    @property
    def written(self) -> int:
        """Calls in the file."""
        return len(self.rows) - 1


def metrica_file(calls: Iterable[ExportedCall], *, tag: MetricaTag, now: datetime) -> MetricaFile:
    """The file's rows for ``calls``: spam calls, those without a ClientId and those older
    than 21 days out (a spam call is no conversion to teach the ads)."""
    kept = kept_calls(calls, lambda call: call.ym_client_id, window=METRICA_WINDOW, now=now)
    rows = [list(COLUMNS), *(metrica_row(call, tag) for _, call in kept.calls)]
    return MetricaFile(rows, kept.without_client_id, kept.too_old, kept.spam)


def metrica_row(call: ExportedCall, tag: MetricaTag) -> list[str]:
    """One call as a row of the file; text a spreadsheet would run as a formula starts
    with a quote (`pbx_tracker.spreadsheet`: numbers, E.164 included, stay as they are)."""
    cells = [
        call.ym_client_id or "",
        str(int(call.started_at.timestamp())),
        call.caller or "",
        str(call.talk_seconds),
        str(call.ring_seconds),
        "0" if call.answered else "1",
        _tag(call, tag),
        _flag(call.first_time_caller),
        call.landing_page or "",
    ]
    return [safe_cell(cell) for cell in cells]


def _tag(call: ExportedCall, kind: MetricaTag) -> str:
    source, campaign = call.source or "", call.campaign or ""
    if kind == "source":
        return source
    if kind == "campaign":
        return campaign
    if kind == "source_campaign":
        return f"{source}:{campaign}" if campaign else source
    return ""


def _flag(value: bool | None) -> str:
    return "" if value is None else str(int(value))


def write_metrica(path: Path, file: MetricaFile) -> None:
    """Write the rows as UTF-8 CSV (replacing ``path``); OSError when it cannot."""
    with path.open("w", encoding="utf-8", newline="") as out:
        csv.writer(out).writerows(file.rows)
