"""A call's recording, ``GET /recordings/{call_id}``: anyone signed in may play it.

A recording is served only from ``recordings_dir``: the call's
``recording_path`` (absolute, or a name in that folder) must not contain
``..`` and its real path (symlinks resolved) must lie inside the folder's real
path, else 403 (logged); a missing file is 404.  aiohttp's `FileResponse`
answers Range requests (206), so the browser's ``<audio>`` can seek.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

import structlog
from aiohttp import web
from sqlalchemy import Table, select

from pbx_tracker.store.models import CallRow
from pbx_tracker.web.pages.call_facts import call_id_of
from pbx_tracker.web.pages.common import PAGES, forbidden, html_response, signed_in, to_login
from pbx_tracker.web.pages.layout import problem_page

__all__ = ["add_recordings_routes"]

log = structlog.get_logger(__name__)

calls_table = cast(Table, CallRow.__table__)

AUDIO_TYPES = {
    ".wav": "audio/wav",
    ".mp3": "audio/mpeg",
    ".ogg": "audio/ogg",
    ".gsm": "application/octet-stream",
}


def _resolve(recordings_dir: Path, stored: str) -> tuple[Path | None, str]:
    """(the real path to serve, "") or (None, why it is refused: "parent", "outside")."""
    path = Path(stored)
    if ".." in path.parts:
        return None, "parent"
    folder = recordings_dir.resolve()
    real = (path if path.is_absolute() else folder / path).resolve()
    if not real.is_relative_to(folder) or real == folder:
        return None, "outside"
    return real, ""


async def recording(request: web.Request) -> web.StreamResponse:
    current = await signed_in(request)
    if current is None:
        return to_login(request)
    session, user = current
    pages = request.app[PAGES]
    call_id = request.match_info["call_id"]
    stored, number = None, call_id_of(call_id)
    if number is not None:
        async with pages.engine.connect() as conn:
            query = select(calls_table.c.recording_path).where(calls_table.c.id == number)
            stored = (await conn.execute(query)).scalar_one_or_none()
    if not stored or pages.recordings_dir is None:
        return _missing(request, session, user)
    real, why = await asyncio.to_thread(_resolve, pages.recordings_dir, stored)
    if real is None:
        log.warning("web.recording_refused", user=user.name, call=call_id, reason=why)
        return forbidden(request, session, user, "This recording is not in the recordings folder.")
    content_type = AUDIO_TYPES.get(real.suffix.lower())
    if content_type is None:
        log.warning("web.recording_refused", user=user.name, call=call_id, reason="type")
        return forbidden(request, session, user, "This file is not a recording.")
    if not await asyncio.to_thread(real.is_file):
        return _missing(request, session, user)
    log.info("web.recording", user=user.name, call=call_id)
    headers = {
        "Content-Type": content_type,
        "Content-Disposition": f'inline; filename="call-{call_id}{real.suffix.lower()}"',
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "private, max-age=300",
        "Content-Security-Policy": "default-src 'none'; sandbox",
    }
    return web.FileResponse(real, headers=headers)


def _missing(request: web.Request, session: Any, user: Any) -> web.Response:
    text = "There is no recording of this call (or its file is gone)."
    page = problem_page("No recording", text, user=user, csrf=session.csrf)
    return html_response(page, 404)


def add_recordings_routes(app: web.Application) -> None:
    app.router.add_get(r"/recordings/{call_id}", recording)
