"""AMI messages as the correlator sees them: header fields plus a time.

An `AmiEvent` is one AMI message (event or response) with every value a
string, exactly as Asterisk sent it, and the moment it happened in epoch
seconds.  `estimated` is true when the source had no clock for it (raw AMI
text without `Timestamp:` headers): the time is then inferred from what the
messages themselves say (see `pbx_tracker.ami.capture`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class AmiEvent:
    fields: Mapping[str, str]
    time: float
    estimated: bool = False

    @property
    def name(self) -> str:
        """The `Event:` header ('' for action responses)."""
        return self.fields.get("Event", "")

    def get(self, key: str, default: str = "") -> str:
        return self.fields.get(key, default)


def channel_variables(fields: Mapping[str, str], prefix: str = "") -> dict[str, str]:
    """`ChanVariable: NAME=value` headers (manager.conf `channelvars`) as a dict.

    Repeated headers arrive joined by the reader as one value per line; the
    JSON capture format may also carry `ChanVariable(NAME)` keys.
    """
    found: dict[str, str] = {}
    raw = fields.get(prefix + "ChanVariable", "")
    for line in raw.splitlines():
        name, sep, value = line.partition("=")
        if sep:
            found[name.strip()] = value
    marker = prefix + "ChanVariable("
    for key, value in fields.items():
        if key.startswith(marker) and key.endswith(")"):
            found[key[len(marker) : -1]] = value
    return found
