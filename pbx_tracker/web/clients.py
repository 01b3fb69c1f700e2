"""Who asks the visits API: the network a client address belongs to, and known bots.

- `network_of`: the network a client key (`api.client_key`: an address, or an IPv6
  /64) counts in for the per-network cap: its /24 for IPv4 (an IPv4-mapped IPv6
  address is IPv4), its /48 for IPv6; anything else (no address) counts alone.
- `is_bot`: a User-Agent of a crawler, a headless browser or a script: the list
  of the ``crawler-user-agents`` package (maintained from the user agents seen in
  the wild: Googlebot, bingbot, YandexBot and YandexRenderResourcesBot, AdsBot,
  facebookexternalhit, HeadlessChrome (Puppeteer's and Playwright's default),
  PhantomJS, Selenium, python-requests, curl, aiohttp, Go-http-client...), and no
  User-Agent at all (every browser sends one).

`is_bot` and IPv6 networks are remembered per string (a site's visitors share
few browsers): the list's regular expressions cost about 0.15 ms a miss.
"""

from __future__ import annotations

import functools
from ipaddress import IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

import crawleruseragents

__all__ = ["IPV4_PREFIX", "IPV6_PREFIX", "is_bot", "network_of"]

IPV4_PREFIX = 24
IPV6_PREFIX = 48
_CACHED = 4096


def network_of(client: str) -> str:
    """``203.0.113.0/24`` for ``203.0.113.7`` (or ``::ffff:203.0.113.7``),
    ``2001:db8:1::/48`` for an address or /64 in it; ``client`` itself otherwise."""
    head, dot, last = client.rpartition(".")
    if dot and last.isdigit() and ":" not in head and head.count(".") == 2:
        return f"{head}.0/{IPV4_PREFIX}"  # an IPv4 client key (a tenth of parsing it)
    return _network_of(client)


@functools.lru_cache(maxsize=_CACHED)
def _network_of(client: str) -> str:
    try:
        network: IPv4Network | IPv6Network = ip_network(client, strict=False)
    except ValueError:
        return client
    if isinstance(network, IPv6Network):
        mapped = ip_address(network.network_address)
        assert isinstance(mapped, IPv6Address)
        if mapped.ipv4_mapped is not None and network.prefixlen == 128:
            return str(ip_network(f"{mapped.ipv4_mapped}/{IPV4_PREFIX}", strict=False))
        prefix = IPV6_PREFIX
    else:
        prefix = IPV4_PREFIX
    if network.prefixlen <= prefix:
        return str(network)
    return str(network.supernet(new_prefix=prefix))


@functools.lru_cache(maxsize=_CACHED)
def is_bot(user_agent: str | None) -> bool:
    """True for a known crawler, headless browser or HTTP library, and for no User-Agent."""
    if not user_agent or not user_agent.strip():
        return True
    return bool(crawleruseragents.is_crawler(user_agent))
