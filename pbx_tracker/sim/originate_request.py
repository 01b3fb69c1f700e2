"""An AMI `Originate` as the simulated Asterisk reads it, and the errors it answers at once."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

QUEUED = "Originate successfully queued"
TECHNOLOGIES = frozenset({"IAX2", "PJSIP", "SIP", "DAHDI", "LOCAL", "MOTIF", "CONSOLE"})
DEFAULT_TIMEOUT_MS = 30000  # Asterisk's default Originate Timeout
UNKNOWN = "<unknown>"
_CALLER_ID = re.compile(r'^\s*"?(?P<name>[^"<]*?)"?\s*<(?P<number>[^>]*)>\s*$')


@dataclass(frozen=True)
class OriginateRequest:
    """The headers of an `Originate` action that matter to the simulation."""

    action_id: str
    channel: str
    context: str
    exten: str
    priority: str
    caller_id: str
    timeout: str
    is_async: bool
    variables: tuple[tuple[str, str], ...]

    @classmethod
    def parse(cls, action: Mapping[str, str]) -> OriginateRequest:
        """From the action's headers (names in any case; repeated ones joined by newlines)."""
        headers = {key.lower(): value for key, value in action.items()}
        return cls(
            action_id=headers.get("actionid", ""),
            channel=headers.get("channel", "").strip(),
            context=headers.get("context", "").strip(),
            exten=headers.get("exten", "").strip(),
            priority=headers.get("priority", "").strip(),
            caller_id=headers.get("callerid", "").strip(),
            timeout=headers.get("timeout", "").strip(),
            is_async=headers.get("async", "").strip().lower() in ("true", "yes", "1", "on"),
            variables=tuple(parse_variables(headers.get("variable", ""))),
        )

    @property
    def technology(self) -> str:
        return self.channel.partition("/")[0]

    @property
    def resource(self) -> str:
        """`101/101` of `IAX2/101/101`: what the channel driver dials."""
        return self.channel.partition("/")[2]

    @property
    def device(self) -> str:
        """`IAX2/101` of `IAX2/101/101`: the device whose state changes."""
        return f"{self.technology}/{self.resource.partition('/')[0]}"

    @property
    def timeout_seconds(self) -> float:
        return (int(self.timeout) if self.timeout else DEFAULT_TIMEOUT_MS) / 1000

    def variable(self, name: str) -> str | None:
        return next((value for key, value in self.variables if key == name), None)

    @property
    def caller_name(self) -> str:
        return _caller_id(self.caller_id)[0] or UNKNOWN

    @property
    def caller_number(self) -> str:
        return _caller_id(self.caller_id)[1] or UNKNOWN


def parse_variables(raw: str) -> list[tuple[str, str]]:
    """`Variable:` headers (`a=1,b=2`, or one header per variable) as (name, value) pairs."""
    pairs = []
    for line in raw.splitlines():
        for part in line.split(","):
            name, sep, value = part.partition("=")
            if sep and name.strip():
                pairs.append((name.strip(), value))
    return pairs


def _caller_id(text: str) -> tuple[str, str]:
    """(name, number) of `"Name" <number>`; a bare value is a number if it has no letters."""
    match = _CALLER_ID.match(text)
    if match:
        return match["name"].strip(), match["number"].strip()
    if any(ch.isalpha() for ch in text):
        return text, ""
    return "", text


def originate_error(request: OriginateRequest) -> str | None:
    """The `Message` of the `Response: Error` Asterisk answers at once, or None."""
    if not request.channel:
        return "Channel not specified"
    if request.priority and not request.priority.isdigit():
        return "Invalid priority"
    if request.timeout and not request.timeout.isdigit():
        return "Invalid timeout"
    tech, sep, resource = request.channel.partition("/")
    if not sep or not resource or tech.upper() not in TECHNOLOGIES:
        return "Invalid channel"
    if not request.exten or not request.context:
        return "Originate with 'Exten' requires 'Context' and 'Priority'"
    return None
