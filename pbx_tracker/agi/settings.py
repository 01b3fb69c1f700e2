"""Settings of the FastAGI server the dialplan asks whom to ring (``agi:`` in the config)."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, PositiveFloat

from pbx_tracker.config_fields import ConfigModel, problem


def _network(value: Any) -> Any:
    """``127.0.0.1`` or ``10.0.0.0/24`` as a network; a clear message otherwise."""
    if isinstance(value, IPv4Network | IPv6Network):
        return value
    if not isinstance(value, str):
        raise problem("address", "must be an IP address or network such as 10.0.0.0/24")
    try:
        return ip_network(value.strip(), strict=False)
    except ValueError:
        raise problem("address", "must be an IP address or network such as 10.0.0.0/24") from None


Network = Annotated[IPv4Network | IPv6Network, BeforeValidator(_network)]


class AgiSettings(ConfigModel):
    """Where the FastAGI server listens, who may use it, and how long it waits."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=4573, ge=0, le=65535)
    allow: list[Network] = Field(
        default_factory=lambda: [ip_network("127.0.0.1/32"), ip_network("::1/128")]
    )
    header_timeout: PositiveFloat = 2.0
    command_timeout: PositiveFloat = 5.0
    max_sessions: int = Field(default=500, ge=1)

    def allows(self, address: str) -> bool:
        """True when a client at ``address`` (``127.0.0.1``, ``::ffff:10.0.0.5``) may ask."""
        try:
            ip = ip_network(address, strict=False).network_address
        except ValueError:
            return False
        mapped = getattr(ip, "ipv4_mapped", None)
        candidates = [ip] if mapped is None else [ip, mapped]
        return any(candidate in network for candidate in candidates for network in self.allow)
