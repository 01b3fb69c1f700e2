"""Simulated website visitors for the demo: each opens the landing page from an ad, a
search or directly, and asks the daemon's visits API for a number, as `/tracker.js`
does in a browser.

The visits are real HTTP requests to the daemon's own server (same origin as its
demo landing page), so the pool, its store and attribution work as in production.
"""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass
from typing import Any

import aiohttp

__all__ = ["ARRIVALS", "BROWSER_USER_AGENT", "Arrival", "ShownNumber", "visit_site"]

# What a desktop browser sends: the API shows bots and scripts (aiohttp's own
# User-Agent among them) the site's number, and these visitors stand for people.
BROWSER_USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/131.0.0.0 Safari/537.36"
)


@dataclass(frozen=True, slots=True)
class Arrival:
    """Where a visitor came from: what the landing page's URL and referrer say."""

    label: str
    query: dict[str, str]
    referrer: str | None = None


ARRIVALS = (
    Arrival(
        "yandex ad",
        {
            "utm_source": "yandex",
            "utm_medium": "cpc",
            "utm_campaign": "winter-sale",
            "utm_term": "plastic windows",
            "yclid": "7304119",
        },
        "https://yandex.ru/",
    ),
    Arrival(
        "google ad",
        {"utm_source": "google", "utm_medium": "cpc", "utm_campaign": "brand", "gclid": "Cj0KCQ"},
        "https://www.google.com/",
    ),
    Arrival("vk post", {"utm_source": "vk", "utm_medium": "social", "utm_campaign": "stories"}),
    Arrival("google search", {}, "https://www.google.com/"),
    Arrival("typed the address", {}),
)


@dataclass(frozen=True, slots=True)
class ShownNumber:
    """What a visit was shown: its number (E.164; the fallback when the pool ran out)."""

    arrival: Arrival
    visit_id: str
    number: str
    display: str
    fallback: bool


async def visit_site(
    session: aiohttp.ClientSession,
    base_url: str,
    rng: random.Random,
    *,
    pool: str,
    fallback: str,
) -> ShownNumber | None:
    """One visitor opens the landing page; None when the API refused (shown in the log).
    A visitor shown the fallback (pool exhausted) gets ``fallback`` as the number."""
    arrival = rng.choice(ARRIVALS)
    page = f"{base_url}/demo/"
    if arrival.query:
        page += "?" + "&".join(f"{key}={value}" for key, value in arrival.query.items())
    body: dict[str, Any] = {
        "pool": pool,
        "visitor_id": secrets.token_urlsafe(16),
        "page": page,
        "referrer": arrival.referrer,
        **arrival.query,
    }
    headers = {"Origin": base_url, "User-Agent": BROWSER_USER_AGENT}
    async with session.post(f"{base_url}/api/v1/visits", json=body, headers=headers) as answer:
        if answer.status != 200:
            return None
        shown = await answer.json()
    number = shown["number"] or fallback
    return ShownNumber(arrival, shown["visit_id"], number, shown["display"], shown["fallback"])
