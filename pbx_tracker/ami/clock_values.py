"""How the values the capture clock reads are written: numbers, `EventTV`, a Cdr's
local times, Dial's timeout, and which dialplan applications may keep a channel waiting."""

from __future__ import annotations

import math
from datetime import UTC, datetime

_WAITING_APPS = frozenset(
    app.lower()
    for app in (
        "Wait", "WaitExten", "WaitForSilence", "WaitForNoise", "WaitUntil", "Playback",
        "Background", "BackGround", "Read", "ReadExten", "SayDigits", "SayNumber", "SayAlpha",
        "SayPhonetic", "SayUnixTime", "Record", "VoiceMail", "VoiceMailMain", "MusicOnHold",
        "WaitMusicOnHold", "Echo", "Milliwatt", "Directory", "Authenticate", "ControlPlayback",
        "Festival", "ConfBridge", "MeetMe", "Page", "Park", "ParkedCall", "DISA", "Pickup",
        "SendDTMF", "Transfer", "Originate", "System", "TrySystem",
    )
)  # fmt: skip
WAITING_AGI_COMMANDS = (
    "STREAM FILE", "CONTROL STREAM FILE", "GET DATA", "GET OPTION", "WAIT FOR DIGIT",
    "RECORD FILE", "SAY ", "SPEECH RECOGNIZE", "RECEIVE ",
)  # fmt: skip


def may_wait(application: str, data: str) -> bool:
    """Whether a dialplan application may take a while (ExecIf: the app it runs)."""
    name = application.lower()
    if name in ("execif", "exec", "execiftime"):
        inner = data.partition("?")[2] if "?" in data else data
        name = inner.partition("(")[0].strip().lower()
    return name in _WAITING_APPS


def dial_timeout(data: str) -> float | None:
    """Dial's second argument, the seconds it rings before giving up (None: none given)."""
    arguments = data.split(",")
    return number_of(arguments[1].strip()) if len(arguments) > 1 else None


def number_of(value: str | None) -> float | None:
    if not value:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def event_tv_epoch(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
    except ValueError:
        return None


def cdr_local_seconds(value: str | None) -> float | None:
    """A Cdr time (`2026-12-07 03:37:16`, the PBX's zone) read as if it were UTC."""
    if not value:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None
