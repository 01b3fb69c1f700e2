"""The config against the live Asterisk: what a valid config cannot tell.

`self_check` asks Asterisk (see `live_asterisk` for the actions and classes)
and returns every problem as one line naming the config key and the fix:

- the AMI user may run what the daemon sends (``ListCommands``), and the
  ``ami.events`` it logs in with leave it the event classes it needs;
- the managers' dial strings name drivers and devices Asterisk has
  (`dial_check`);
- the inbound contexts (``calls.inbound_contexts``, ``*`` wildcards too), the
  routing snippet's ``pbx-tracker-inbound`` (when ``agi.enabled``) and the
  ring-me context exist in the dialplan;
- ``recordings_dir`` is a folder this user can read;
- CEL: Asterisk writes the log CEL recovery reads (`cel_check`).

What cannot be asked with the user's classes is skipped with a note.  The
event classes the user reads are not visible to any action (a Login with too
few classes succeeds alike): the daemon learns them from the events it gets
(`live_check.EventClassWatch`).
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Callable
from fnmatch import fnmatchcase
from pathlib import Path
from typing import TYPE_CHECKING

from pbx_tracker.ami.live_asterisk import Findings, LiveAsterisk, Send
from pbx_tracker.selfcheck.cel import check_cel
from pbx_tracker.selfcheck.dial import check_dial_strings

if TYPE_CHECKING:
    from pbx_tracker.config import Settings

__all__ = [
    "NEEDED_EVENT_CLASSES",
    "check_actions",
    "check_contexts",
    "check_event_classes",
    "check_recordings",
    "self_check",
    "user_name",
]

SNIPPET_CONTEXT = "pbx-tracker-inbound"
MANAGER_CONF = "manager.conf (see config/asterisk/manager_pbx_tracker.conf), then manager reload"
NEEDED_EVENT_CLASSES = ("call", "agent", "dialplan")
_EVERY_EVENT = frozenset({"on", "yes", "true", "all", "1"})
_NO_EVENT = frozenset({"off", "no", "false", "0", ""})


def _routing(settings: Settings) -> bool:
    return settings.agi.enabled


def _ring_me(settings: Settings) -> bool:
    return settings.callbacks.enabled and settings.callbacks.ring_me.enabled


def _always(settings: Settings) -> bool:
    return True


# action, the write class that allows it, what it is for, when the daemon sends it
NEEDED_ACTIONS: tuple[tuple[str, str, str, Callable[[Settings], bool]], ...] = (
    ("CoreShowChannels", "reporting", "the resync after each login", _always),
    ("DeviceStateList", "reporting", "phones' states for routing", _routing),
    ("ExtensionStateList", "reporting", "hints for routing", _routing),
    ("Getvar", "reporting", "this check of the managers' devices", _always),
    ("ShowDialPlan", "reporting", "this check of the dialplan's contexts", _always),
    ("Originate", "originate", "ring-me callbacks and Call now", _ring_me),
)
# an action only a class pbx-tracker does not need allows
TOO_MUCH = (("Command", "command"), ("ModuleLoad", "system"), ("UpdateConfig", "config"))


async def self_check(settings: Settings, send: Send) -> Findings:
    """Every problem of the config against the Asterisk this logged-in ``send`` talks to."""
    findings = check_recordings(settings.recordings_dir)
    findings.extend(check_event_classes(settings))
    asterisk = await LiveAsterisk.ask(send)
    findings.extend(check_actions(settings, asterisk))
    findings.extend(await check_dial_strings(settings, asterisk))
    findings.extend(await check_contexts(settings, asterisk))
    findings.extend(await check_cel(settings.cel, asterisk, user_name()))
    return findings


# -- the AMI user's classes -----------------------------------------------------


def check_event_classes(settings: Settings) -> Findings:
    """``ami.events`` (the Login's ``Events:``) must leave the classes the tracker reads."""
    findings = Findings()
    value = settings.ami.events.strip().lower()
    if value in _EVERY_EVENT:
        return findings
    classes = set() if value in _NO_EVENT else {c.strip() for c in value.split(",")}
    missing = [c for c in NEEDED_EVENT_CLASSES if c not in classes and "all" not in classes]
    if missing:
        findings.add(
            "ami.events",
            f'"{settings.ami.events}" leaves out the {", ".join(missing)} events the tracker '
            'reads; set ami.events: "on" (manager.conf\'s read= limits them anyway)',
        )
    return findings


def check_actions(settings: Settings, asterisk: LiveAsterisk) -> Findings:
    """The actions the daemon sends are ones this user may run (``ListCommands``)."""
    findings = Findings()
    if asterisk.actions is None:
        findings.notes.append("the AMI user's actions not checked: ListCommands was refused")
        return findings
    user = settings.ami.username
    missing: dict[str, list[str]] = {}
    for action, grant, purpose, needed in NEEDED_ACTIONS:
        if needed(settings) and not asterisk.may(action):
            missing.setdefault(grant, []).append(f"{action} ({purpose})")
    for grant, actions in missing.items():
        findings.add(
            "ami.username",
            f"{user} may not run {', '.join(actions)}; add {grant} to write= of [{user}] "
            f"in {MANAGER_CONF}",
        )
    extra = [grant for action, grant in TOO_MUCH if asterisk.lists(action)]
    if extra:
        findings.notes.append(
            f"the AMI user {user} also holds write classes {', '.join(extra)}: more than "
            "pbx-tracker needs (originate,reporting)"
        )
    return findings


# -- the dialplan ---------------------------------------------------------------


def _wanted_contexts(settings: Settings) -> list[tuple[str, str, str]]:
    """(config key, context or pattern, the fix) of every context the config relies on."""
    wanted = [
        (
            f"calls.inbound_contexts[{i}]",
            name,
            "set it to the context the trunks deliver calls to (asterisk -rx 'dialplan show')",
        )
        for i, name in enumerate(settings.calls.inbound_contexts)
    ]
    if settings.agi.enabled:
        snippet = (
            "add config/asterisk/extensions_pbx_tracker.conf to the dialplan and send the "
            "tracked numbers to it (config/asterisk/README.md, section 3), or set "
            "agi.enabled: false"
        )
        wanted.append(("agi.enabled", SNIPPET_CONTEXT, snippet))
    if _ring_me(settings):
        ring_me = (
            "add the [pbx-tracker-callback] context of config/asterisk/extensions_pbx_tracker.conf"
            " (config/asterisk/README.md, section 4), or name the context that dials the customer"
        )
        wanted.append(("callbacks.ring_me.context", settings.callbacks.ring_me.context, ring_me))
    return wanted


async def check_contexts(settings: Settings, asterisk: LiveAsterisk) -> Findings:
    """Every context the config names exists (a pattern: some context matches it)."""
    findings = Findings()
    for key, name, fix in _wanted_contexts(settings):
        found = await _context_found(asterisk, name)
        if found is None:
            findings.notes.append(
                "the dialplan's contexts not checked: the AMI user may not run ShowDialPlan "
                "(reporting class)"
            )
            break
        if not found:
            what = "no context matches" if "*" in name else "no context"
            findings.add(key, f"{name} — the dialplan has {what} {name}; {fix}")
    return findings


async def _context_found(asterisk: LiveAsterisk, name: str) -> bool | None:
    if "*" not in name:
        return await asterisk.context_exists(name)
    stem = name.partition("*")[0]
    if stem and fnmatchcase(stem, name) and await asterisk.context_exists(stem):
        return True  # from-trunk* and from-trunk exists: no need for the whole dialplan
    contexts = await asterisk.all_contexts()
    return None if contexts is None else any(fnmatchcase(c, name) for c in contexts)


# -- files ------------------------------------------------------------------------


def user_name() -> str:
    """Who this process runs as (the check of files is for that user)."""
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return f"uid {os.geteuid()}"


def check_recordings(folder: Path) -> Findings:
    """``recordings_dir`` is a folder this process can list and read."""
    findings = Findings()
    if not folder.exists():
        findings.add(
            "recordings_dir",
            f"{folder} does not exist; set it to MixMonitor's folder "
            "(Asterisk's default: /var/spool/asterisk/monitor)",
        )
    elif not folder.is_dir():
        findings.add("recordings_dir", f"{folder} is not a folder; set it to MixMonitor's folder")
    elif not os.access(folder, os.R_OK | os.X_OK):
        user = user_name()
        findings.add(
            "recordings_dir",
            f"{folder} is not readable by {user}; let {user} read it "
            f"(e.g. usermod -aG asterisk {user}, and group read on the recordings)",
        )
    return findings
