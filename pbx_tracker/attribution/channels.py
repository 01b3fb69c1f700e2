"""Which advertising channel a website visit came from: source, medium, campaign.

The marketer's tags win (``utm_source`` / ``utm_medium`` / ``utm_campaign``);
without them an ad click id names the platform (``gclid``: google / cpc,
``yclid``: yandex / cpc, ``fbclid``: facebook / social); without those the
referrer does (a search engine: organic; another site: referral, its host the
source); a visit with none of these, or one from the site's own pages, is
``direct`` / ``(none)``, as the analytics services call it.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from pbx_tracker.attribution.visits import Visit

__all__ = ["Channel", "channel_of"]

DIRECT = "direct"
NO_MEDIUM = "(none)"

# host label (the part before the public suffix) -> source name
_SEARCH_ENGINES = {
    "google": "google",
    "yandex": "yandex",
    "ya": "yandex",
    "bing": "bing",
    "duckduckgo": "duckduckgo",
    "yahoo": "yahoo",
    "rambler": "rambler",
    "baidu": "baidu",
}
_SEARCH_HOSTS = {"go.mail.ru": "mail.ru", "search.yahoo.com": "yahoo"}
_CLICK_IDS = (
    ("gclid", "google", "cpc"),
    ("yclid", "yandex", "cpc"),
    ("fbclid", "facebook", "social"),
)


@dataclass(frozen=True, slots=True)
class Channel:
    source: str
    medium: str
    campaign: str | None
    why: str


def channel_of(visit: Visit) -> Channel:
    """The channel of ``visit``, with a few words on what decided it."""
    if visit.utm_source:
        medium = visit.utm_medium or NO_MEDIUM
        return Channel(visit.utm_source, medium, visit.utm_campaign, "utm tags")
    for field, source, medium in _CLICK_IDS:
        if getattr(visit, field):
            return Channel(source, visit.utm_medium or medium, visit.utm_campaign, field)
    return _from_referrer(visit)


def _from_referrer(visit: Visit) -> Channel:
    host = _host(visit.referrer)
    if host is None or host == _host(visit.landing_page):
        return Channel(DIRECT, NO_MEDIUM, None, "no referrer" if host is None else "own site")
    engine = _search_engine(host)
    if engine is not None:
        return Channel(engine, "organic", None, f"search referrer {host}")
    return Channel(host, "referral", None, f"referrer {host}")


def _host(url: str | None) -> str | None:
    if not url:
        return None
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    if not host:
        return None
    return host.removeprefix("www.")


def _search_engine(host: str) -> str | None:
    if host in _SEARCH_HOSTS:
        return _SEARCH_HOSTS[host]
    labels = host.split(".")
    # google.com, google.co.uk, yandex.ru, ya.ru, search.yahoo.com ...
    for label in labels[-3:-1]:
        if label in _SEARCH_ENGINES:
            return _SEARCH_ENGINES[label]
    return None
