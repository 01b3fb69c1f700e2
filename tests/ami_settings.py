"""What `AmiListener` reads from the config, with short timings for tests on loopback, and
the classes of the AMI user the project ships."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

MANAGER_CONF = Path(__file__).parents[1] / "config" / "asterisk" / "manager_pbx_tracker.conf"


def shipped_write_classes() -> frozenset[str]:
    """The ``write =`` classes of the AMI user the project ships."""
    for line in MANAGER_CONF.read_text(encoding="utf-8").splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "write":
            return frozenset(value.partition(";")[0].strip().split(","))
    raise AssertionError(f"no write= line in {MANAGER_CONF}")


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
