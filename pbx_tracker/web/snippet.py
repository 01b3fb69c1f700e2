"""The website's snippet ``/tracker.js`` and a demo landing page ``/demo/``.

A site puts one tag on every page::

    <script async src="https://track.example.ru/tracker.js"
            data-pool="site" data-number="+7 495 111-00-00"
            data-selector=".phone"></script>

- ``src``: this daemon; the API is found next to the script (``api/v1/...``
  relative to it), so the daemon may sit under a path behind a proxy;
- ``data-number``: the site's own number, in any usual form: every form of its
  digits (``8 (495) 111-00-00``, ``+74951110000``) in the page's text and
  ``tel:`` links is swapped for the visitor's pool number, also in parts added
  later;
- ``data-pool`` (optional): the pool's name, when the daemon has several;
- ``data-selector`` (optional): a CSS selector of elements whose whole text is
  the number (a number split over several elements, say).

The page keeps its own number when the pool is exhausted (``fallback``) or the
daemon cannot be reached.  The site's origin must be in
``http.allowed_origins``; the daemon's own demo page needs no listing.
"""

from __future__ import annotations

import hashlib
import html
from dataclasses import dataclass
from functools import cache
from importlib.resources import files

import phonenumbers
from aiohttp import web

from pbx_tracker.phones import display_number
from pbx_tracker.web.models import ErrorAnswer
from pbx_tracker.web.openapi import Operation, Response

__all__ = ["SNIPPET_OPERATIONS", "LandingPage", "add_snippet_routes"]

SCRIPT_PATH = "/tracker.js"
DEMO_PATH = "/demo/"
# Short enough that a new daemon version reaches the sites within minutes.
SCRIPT_MAX_AGE = 300

# For the API's OpenAPI document: every route the server answers is described there.
SNIPPET_OPERATIONS = (
    Operation(
        "GET",
        SCRIPT_PATH,
        "trackerScript",
        "The website snippet (application/javascript), cached by ETag",
        {
            200: Response("The script", headers={"ETag": "Its version"}),
            304: Response("Not modified: If-None-Match names this version"),
        },
    ),
    Operation(
        "GET",
        DEMO_PATH,
        "demoLanding",
        "A demo landing page (text/html) with the snippet, when configured",
        {200: Response("The page"), 404: Response("No demo page configured", ErrorAnswer)},
    ),
)


@dataclass(frozen=True, slots=True)
class LandingPage:
    """The demo landing page: the pool it asks and the site's own number (E.164)."""

    pool: str
    number: str
    region: str = "RU"


@dataclass(frozen=True, slots=True)
class _Asset:
    body: bytes
    etag: str


def _read(name: str) -> bytes:
    return (files("pbx_tracker.web") / "static" / name).read_bytes()


@cache
def _script() -> _Asset:
    """Read once: the file only changes with the package."""
    body = _read("tracker.js")
    return _Asset(body, f'"{hashlib.sha256(body).hexdigest()[:20]}"')


@cache
def _landing_template() -> str:
    return _read("landing.html").decode("utf-8")


def _matches(if_none_match: str | None, etag: str) -> bool:
    """True when the browser's cached copy (``If-None-Match``) is this one."""
    if if_none_match is None:
        return False
    tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return "*" in tags or etag in tags


async def tracker_js(request: web.Request) -> web.Response:
    asset = _script()
    headers = {
        "ETag": asset.etag,
        "Cache-Control": f"public, max-age={SCRIPT_MAX_AGE}",
    }
    if _matches(request.headers.get("If-None-Match"), asset.etag):
        # Returned, not raised: the API's error middleware would turn a raised 304 into JSON.
        return web.Response(status=304, headers=headers)
    return web.Response(
        body=asset.body, content_type="application/javascript", charset="utf-8", headers=headers
    )


def _international(e164: str) -> str:
    """``+7 495 111-00-00``: the page shows the number in two forms, both get swapped."""
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return e164
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def render_landing(landing: LandingPage) -> str:
    """The landing page with the site's number and pool filled in, HTML-escaped."""
    values = {
        "number": landing.number,
        "display": display_number(landing.number, landing.region),
        "international": _international(landing.number),
        "pool": landing.pool,
    }
    page = _landing_template()
    for name, value in values.items():
        page = page.replace("{{" + name + "}}", html.escape(value, quote=True))
    return page


def add_snippet_routes(app: web.Application, *, landing: LandingPage | None) -> None:
    """``GET /tracker.js``; ``GET /demo/``, a 404 unless ``landing`` is given."""
    app.router.add_get(SCRIPT_PATH, tracker_js)
    page = None if landing is None else render_landing(landing)

    async def demo(request: web.Request) -> web.Response:
        if page is None:
            # Routed all the same: other methods get 405, as on every described path.
            raise web.HTTPNotFound()
        return web.Response(
            text=page,
            content_type="text/html",
            charset="utf-8",
            headers={"Cache-Control": "no-cache"},
        )

    app.router.add_get(DEMO_PATH, demo)
