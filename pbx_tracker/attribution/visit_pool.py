"""A number pool as the visits API asks it: `VisitPool`, what it is asked and answers.

A page starts a visit (`VisitStart`: where it is, where the visitor came from)
and gets the number to show (`VisitAnswer`), then keeps it (`KeepAliveAnswer`);
a pool refuses an unknown pool name (`UnknownPool`) and a client holding too
many live visits (`TooManyVisits`).  The same pydantic models validate the
API's requests and describe it in its OpenAPI document (`pbx_tracker.web.api`).
Implementations: `memory_pool.MemoryVisitPool`, `stored_pool.StoredVisitPool`,
`configured_pools.VisitPools`, and `NoPools`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Protocol

from pydantic import (
    AnyUrl,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    UrlConstraints,
)

__all__ = [
    "VISIT_ID",
    "VISIT_ID_PATTERN",
    "KeepAliveAnswer",
    "NoPools",
    "TooManyVisits",
    "UnknownPool",
    "VisitAnswer",
    "VisitPool",
    "VisitStart",
]

VISIT_ID_PATTERN = r"^[A-Za-z0-9_-]{16,64}$"
VISIT_ID = re.compile(VISIT_ID_PATTERN)


def _blank_is_none(value: Any) -> Any:
    """``document.referrer`` is "" when there is none."""
    return None if value == "" else value


_NAME = StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
Name = Annotated[str, _NAME]
# checked as sent; the stored form may gain a "/" (stored columns hold 2048)
MAX_URL_LENGTH = 2000
Url = Annotated[
    AnyUrl,
    UrlConstraints(
        max_length=MAX_URL_LENGTH, allowed_schemes=["http", "https"], host_required=True
    ),
]
# the schema says what is accepted: a URL, null, or "" (taken as null)
OptionalUrl = Annotated[
    Url | None,
    BeforeValidator(_blank_is_none, json_schema_input_type=Url | Literal[""] | None),
]
Tag = Annotated[str, StringConstraints(max_length=256, pattern=r"^[^\x00-\x1f\x7f]*$")]
ClickId = Annotated[
    str, StringConstraints(min_length=1, max_length=256, pattern=r"^[A-Za-z0-9._~-]+$")
]
GaClientId = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9.]+$")
]
YmClientId = Annotated[str, StringConstraints(min_length=1, max_length=32, pattern=r"^\d+$")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VisitStart(_Model):
    """A page asks which number to show: where it is, where the visitor came from."""

    pool: Name | None = None
    visitor_id: Name | None = None
    page: Url
    referrer: OptionalUrl = None
    utm_source: Tag | None = None
    utm_medium: Tag | None = None
    utm_campaign: Tag | None = None
    utm_term: Tag | None = None
    utm_content: Tag | None = None
    gclid: ClickId | None = None
    yclid: ClickId | None = None
    fbclid: ClickId | None = None
    ga_client_id: GaClientId | None = None
    ym_client_id: YmClientId | None = None
    webdriver: StrictBool | None = Field(
        default=None,
        description="The browser's navigator.webdriver: true when automation drives it",
    )


class VisitAnswer(_Model):
    """The number to show; ``fallback``: no pool number (the pool is exhausted, or the
    visitor is a bot), ``display`` is the fallback's.

    ``keep_alive_seconds``: how often the page should send a keep-alive.
    """

    visit_id: str
    number: str | None
    display: str
    fallback: bool
    keep_alive_seconds: int


class KeepAliveAnswer(_Model):
    """The visit goes on; its number is held ``expires_in`` seconds past now."""

    visit_id: str
    number: str | None
    display: str
    expires_in: int


class UnknownPool(Exception):
    """The request names a pool this server does not have."""


class TooManyVisits(Exception):
    """The client (or its network) already holds as many live visits as it may."""

    def __init__(self, retry_after: int) -> None:
        super().__init__("too many live visits from this client")
        self.retry_after = retry_after


class VisitPool(Protocol):
    """What the handlers need from a number pool."""

    async def start(self, request: VisitStart, client: str, *, bot: bool = False) -> VisitAnswer:
        """Start a visit or resume the visitor's live one (``bot``: the visitor is a
        crawler or an automated browser); raises `UnknownPool`, `TooManyVisits`."""
        ...

    async def keep_alive(self, visit_id: str, client: str) -> KeepAliveAnswer | None:
        """Extend a live visit; None when the visit is unknown or has expired."""
        ...


class NoPools:
    """The API with no number pool configured: every visit is for an unknown pool."""

    async def start(self, request: VisitStart, client: str, *, bot: bool = False) -> VisitAnswer:
        raise UnknownPool(request.pool or "default")

    async def keep_alive(self, visit_id: str, client: str) -> KeepAliveAnswer | None:
        return None
