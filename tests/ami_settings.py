"""What `AmiListener` reads from the config, with short timings for tests on loopback."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import SecretStr


@dataclass(frozen=True)
class ListenerSettings:
    secret: SecretStr
    host: str = "127.0.0.1"
    port: int = 0
    username: str = "tracker"
    events: str = "on"
    connect_timeout: float = 2.0
    ping_interval: float = 10.0
    ping_timeout: float = 2.0
    reconnect_initial: float = 0.02
    reconnect_max: float = 0.2
