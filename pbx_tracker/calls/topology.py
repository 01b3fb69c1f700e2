"""What the correlator must know about the PBX, and how it reads a leg's owner.

A leg (a channel that rang for a call) belongs to a manager when:

- its channel is one of the manager's devices (any channel driver);
- or it is a trunk leg whose dialled number (the dial string, or the exten of
  the Local channel that dialled it) is one of the manager's external numbers;
- or it was dialled from a Local channel whose ``exten@context`` matches one
  of the Local-channel patterns for the manager's extension or number
  (``{extension}@from-internal``, ``LC-{number}@*``, ...).

`Reach` says who that is and which way they were reached.  The config side
(`pbx_tracker.replay.topology_of`) supplies the lookups; without a config a
device whose peer name is an extension number is that extension's manager.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from functools import lru_cache

__all__ = [
    "DEFAULT_LOCAL_CHANNELS",
    "LocalPattern",
    "Reach",
    "Topology",
    "default_manager_for_channel",
    "device_of",
    "dialled_numbers",
    "is_local_channel",
    "is_pseudo_channel",
    "local_pattern_problem",
    "local_target",
]

# FreePBX and most hand-written dialplans: ring groups and queue members are
# Local/<ext>@from-internal (or @from-queue), follow-me rings FMPR-/FMGL-<ext>,
# confirmed external legs are LC-<number>, plain external legs <number>.
DEFAULT_LOCAL_CHANNELS = (
    "{extension}@*",
    "FMPR-{extension}@*",
    "FMGL-{extension}@*",
    "{number}@*",
    "LC-{number}@*",
)

VIA_DEVICE = "device"
VIA_NUMBER = "number"

_CHANNEL_SUFFIX = re.compile(r"-[0-9a-zA-Z]+(;\d)?$")
_LOCAL_HALF = re.compile(r"-[0-9a-zA-Z]+;\d$")  # Local/x@ctx-0000000e;1 (interfaces have none)
_PSEUDO_TECHS = frozenset(
    {"local", "announcer", "recorder", "snoop", "cbann", "cbrec", "bridge", "multicast", "message"}
)
_NUMBER_TOKEN = re.compile(r"\+?\d{5,}")
_PLACEHOLDER = re.compile(r"\{(extension|number)\}")


@dataclass(frozen=True, slots=True)
class Reach:
    """Who a leg reached: a manager's extension (None: nobody declared), and how.

    ``via`` is ``device`` (one of their phones) or ``number`` (an external
    number through a trunk); ``number`` is that number, as the directory reads it.
    """

    manager: str | None
    via: str = VIA_DEVICE
    number: str | None = None


def is_local_channel(name: str) -> bool:
    return name.lower().startswith("local/")


def is_pseudo_channel(name: str) -> bool:
    """Channels that are never a person: Local halves, announcers, recorders, snoops."""
    tech = name.partition("/")[0].lower()
    return tech in _PSEUDO_TECHS


def device_of(channel: str) -> str:
    """`PJSIP/101-0000001a` → `PJSIP/101`; `Local/101@ctx-0001;2` → `Local/101@ctx`."""
    return _CHANNEL_SUFFIX.sub("", channel)


def local_target(channel: str) -> str | None:
    """`Local/FMPR-103@from-internal-0000000e;1` → `FMPR-103@from-internal`; else None.

    Queue interfaces and dial strings (`Local/101@from-queue/n`) read the same way.
    """
    if not is_local_channel(channel):
        return None
    target = _LOCAL_HALF.sub("", channel[len("Local/") :])
    return target.split("/", 1)[0] or None


def default_manager_for_channel(channel: str) -> str | None:
    """Without a manager list, a phone whose peer name is an extension number is a manager.

    `PJSIP/101-0000001a` → `101`; trunks (`IAX2/carrier-1902`) and Local channels → None.
    """
    if is_pseudo_channel(channel) or "/" not in channel:
        return None
    peer = device_of(channel).split("/", 1)[1]
    return peer if peer.isdigit() and len(peer) <= 6 else None


def _default_extension(extension: str) -> str | None:
    return extension if extension.isdigit() and len(extension) <= 6 else None


def _default_phone_number(text: str) -> str | None:
    digits = text.lstrip("+")
    return text if digits.isdigit() and len(digits) >= 7 else None


def _nobody(_number: str) -> str | None:
    return None


def dialled_numbers(dial_string: str) -> Iterator[str]:
    """Numbers in a Dial() string, last first: `carrier-out/79160000103` → `79160000103`.

    Handles `trunk/number`, `number@trunk`, `trunk/sip:+number@host:port`; ports and
    short peer names are not numbers (five digits at least).
    """
    tokens = re.split(r"[/@;:&,]", dial_string)
    for token in reversed(tokens):
        if _NUMBER_TOKEN.fullmatch(token.strip()):
            yield token.strip()


@dataclass(frozen=True, slots=True)
class LocalPattern:
    """One Local-channel pattern: ``FMPR-{extension}@from-internal``, ``LC-{number}@*``."""

    text: str
    kind: str
    regex: re.Pattern[str]

    @classmethod
    def parse(cls, text: str) -> LocalPattern:
        problem = local_pattern_problem(text)
        if problem:
            raise ValueError(problem)
        placeholder = _PLACEHOLDER.search(text)
        assert placeholder is not None  # checked above
        kind = placeholder.group(1)
        exten, _, context = text.partition("@")
        value = "(?P<value>[^@]+?)" if kind == "extension" else r"(?P<value>\+?\d+)"
        exten_regex = "".join(
            value if part == f"{{{kind}}}" else _wildcard(part)
            for part in re.split(r"(\{extension\}|\{number\})", exten)
        )
        context_regex = _wildcard(context or "*")
        return cls(text, kind, re.compile(f"{exten_regex}@{context_regex}", re.IGNORECASE))

    def match(self, target: str) -> str | None:
        """The extension or number this pattern reads in ``exten@context``, else None."""
        found = self.regex.fullmatch(target)
        return found.group("value") if found else None


def _wildcard(text: str) -> str:
    return ".*".join(re.escape(part) for part in text.split("*"))


@lru_cache(maxsize=16)
def _compiled(texts: tuple[str, ...]) -> tuple[LocalPattern, ...]:
    return tuple(LocalPattern.parse(text) for text in texts)


def local_pattern_problem(text: str) -> str | None:
    """Why ``text`` is not a usable Local-channel pattern, or None."""
    placeholders = _PLACEHOLDER.findall(text)
    if len(placeholders) != 1:
        return "must hold exactly one {extension} or {number}, e.g. {extension}@from-internal"
    if text.count("@") > 1 or text.partition("@")[2].find("{") >= 0:
        return "write it as EXTEN@CONTEXT with the placeholder in EXTEN, e.g. LC-{number}@*"
    if re.search(r"[\s/;]", text):
        return "no spaces, slashes or ';' (write the exten@context of Local/exten@context)"
    return None


@dataclass(frozen=True, slots=True)
class Topology:
    """What the correlator must know about the PBX (from the config).

    ``manager_for_channel``: the manager whose device a channel is
    (``IAX2/101-1234`` → ``101``); ``manager_for_extension``: the manager with
    that extension; ``manager_for_number``: the manager whose external number
    this is (it reads the number as the carrier writes it); ``phone_number``:
    the number in canonical form (E.164) when ``text`` is an outside phone
    number rather than an internal one, else None.
    """

    node: str = "asterisk"
    inbound_contexts: frozenset[str] = frozenset({"from-trunk"})
    did_variable: str = "TRACK_DID"
    manager_for_channel: Callable[[str], str | None] = field(default=default_manager_for_channel)
    manager_for_extension: Callable[[str], str | None] = field(default=_default_extension)
    manager_for_number: Callable[[str], str | None] = field(default=_nobody)
    phone_number: Callable[[str], str | None] = field(default=_default_phone_number)
    local_channels: tuple[str, ...] = DEFAULT_LOCAL_CHANNELS

    def is_inbound_context(self, context: str) -> bool:
        """``context`` is one of the inbound contexts (``*`` wildcards allowed)."""
        if context in self.inbound_contexts:
            return True
        return any(
            "*" in pattern and fnmatchcase(context, pattern) for pattern in self.inbound_contexts
        )

    def reach_of_local(self, target: str) -> Reach | None:
        """Whom a Local channel ``exten@context`` rings, by the first pattern that knows."""
        for pattern in _compiled(self.local_channels):
            value = pattern.match(target)
            if value is None:
                continue
            if pattern.kind == "extension":
                manager = self.manager_for_extension(value)
                if manager is not None:
                    return Reach(manager, VIA_DEVICE)
            else:
                number = self.phone_number(value)
                manager = self.manager_for_number(value) if number is not None else None
                if manager is not None:
                    return Reach(manager, VIA_NUMBER, number)
        return None

    def reach_of_number(self, dial_string: str) -> Reach | None:
        """Who a trunk leg reached by its dial string: a manager's number, or an outside number."""
        for text in dialled_numbers(dial_string):
            number = self.phone_number(text)
            if number is not None:
                return Reach(self.manager_for_number(text), VIA_NUMBER, number)
        return None
