"""Who asks the visits API: the client key of a request, and known bots.

- `client_key`: the peer address, or the address our proxy appended to
  X-Forwarded-For; IPv6 clients count per /64 (the per-network cap then counts
  them in `pbx_tracker.attribution.memory_pool.network_of`).
- `is_bot`: a User-Agent of a crawler, a headless browser or a script: the list
  of the ``crawler-user-agents`` package (maintained from the user agents seen in
  the wild: Googlebot, bingbot, YandexBot and YandexRenderResourcesBot, AdsBot,
  facebookexternalhit, HeadlessChrome (Puppeteer's and Playwright's default),
  PhantomJS, Selenium, python-requests, curl, aiohttp, Go-http-client...), and no
  User-Agent at all (every browser sends one).

`is_bot` is remembered per string (a site's visitors share few browsers): the
list's regular expressions cost about 0.15 ms a miss.
"""

from __future__ import annotations

import functools
from ipaddress import IPv6Address, ip_address, ip_network

import crawleruseragents
from aiohttp import web

__all__ = ["client_key", "is_bot"]

_CACHED = 4096


def client_key(request: web.Request, trust_proxy: bool) -> str:
    """Who is asking: the peer address, or the address our proxy appended to
    X-Forwarded-For (the last entry) when ``trust_proxy``.  IPv6 clients count per /64."""
    address = request.remote or ""
    if trust_proxy:
        hops = [
            hop.strip()
            for value in request.headers.getall("X-Forwarded-For", ())
            for hop in value.split(",")
        ]
        if hops and hops[-1]:
            address = hops[-1]
    try:
        ip = ip_address(address)
    except ValueError:
        return address or "unknown"
    if isinstance(ip, IPv6Address) and ip.ipv4_mapped is None:
        return str(ip_network(f"{ip}/64", strict=False))
    return str(ip.ipv4_mapped or ip) if isinstance(ip, IPv6Address) else str(ip)


@functools.lru_cache(maxsize=_CACHED)
def is_bot(user_agent: str | None) -> bool:
    """True for a known crawler, headless browser or HTTP library, and for no User-Agent."""
    if not user_agent or not user_agent.strip():
        return True
    return bool(crawleruseragents.is_crawler(user_agent))
