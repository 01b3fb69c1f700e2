"""Is Asterisk's CEL log there for CEL recovery to read?

Calls made while pbx-tracker is down are recovered from the CEL log only if
Asterisk writes it where ``cel:`` says, in the shipped column order, with the
events and applications recovery reads.  Checked, each problem naming its key:

1. the file (``cel.file``, when no ``cel.table``): its folder exists (the
   ``cel_custom`` module does not create it and writes nothing without it),
   the file exists and this user can read it, and its first line is a CEL
   record of the shipped mapping (`pbx_tracker.cel.log`);
2. with the AMI command class only (the shipped user does not get it):
   ``cel show status`` says logging is enabled, tracks the events recovery
   reads, and tracks the applications it reads (never ``apps = all``, which
   current Asterisk reads as an application named "all").

CEL recovery that is off (``cel.enabled: false``) is a note: calls made while
the daemon is down are then not recorded.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from pbx_tracker.ami.live_asterisk import Findings, LiveAsterisk
from pbx_tracker.cel.log import looks_like_cel

if TYPE_CHECKING:
    from pathlib import Path

    from pbx_tracker.cel.settings import CelSettings

__all__ = ["NEEDED_APPS", "NEEDED_EVENTS", "check_cel", "check_cel_file"]

CEL_CONF = "cel.conf (see config/asterisk/cel_pbx_tracker.conf), then module reload cel"
MAPPING = "config/asterisk/cel_custom_pbx_tracker.conf"
NEEDED_EVENTS = (
    "CHAN_START",
    "CHAN_END",
    "ANSWER",
    "HANGUP",
    "APP_START",
    "APP_END",
    "BRIDGE_ENTER",
    "BRIDGE_EXIT",
    "LINKEDID_END",
)
NEEDED_APPS = ("dial", "queue", "mixmonitor", "set")
_EVENT_LINE = "CEL Tracking Event: "
_APP_LINE = "CEL Tracking Application: "


async def check_cel(settings: CelSettings, asterisk: LiveAsterisk, user: str) -> Findings:
    """The CEL log recovery reads, as far as this user and the AMI user can tell."""
    findings = Findings()
    if not settings.enabled:
        findings.notes.append(
            "CEL recovery is off (cel.enabled: false): calls made while pbx-tracker is "
            "down or restarting are not recorded"
        )
        return findings
    if settings.table is None:
        findings.extend(check_cel_file(settings.file, user))
    findings.extend(await _check_status(asterisk))
    return findings


def check_cel_file(path: Path, user: str) -> Findings:
    """The CSV file: its folder, the file, this user may read it, its column order."""
    findings = Findings()
    if not path.parent.is_dir():
        findings.add(
            "cel.file",
            f"{path.parent} does not exist and cel_custom writes nothing without it: "
            f"mkdir -p {path.parent} && chown asterisk: {path.parent}, and install {MAPPING}",
        )
    elif not path.exists():
        findings.add(
            "cel.file",
            f"{path} is not written: load cel_custom with the mapping of {MAPPING} "
            "(modules.conf: load => cel_custom.so) and enable CEL (config/asterisk/"
            "cel_pbx_tracker.conf), or set cel.file to the file it writes",
        )
    elif not os.access(path, os.R_OK):
        findings.add(
            "cel.file",
            f"{path} is not readable by {user}; let {user} read it "
            f"(e.g. usermod -aG asterisk {user})",
        )
    else:
        findings.extend(_check_columns(path))
    return findings


def _check_columns(path: Path) -> Findings:
    findings = Findings()
    with path.open("rb") as stream:
        head = stream.read(4096)
    if head.strip() and not looks_like_cel(head):
        findings.add(
            "cel.file",
            f"{path} is not in pbx-tracker's column order; use the mapping of {MAPPING} "
            "in cel_custom.conf (or point cel.file at the file that mapping writes)",
        )
    return findings


async def _check_status(asterisk: LiveAsterisk) -> Findings:
    """``cel show status``: logging on, the events and applications recovery reads."""
    findings = Findings()
    lines = await asterisk.command("cel show status") if asterisk.may("Command") else None
    if lines is None:
        findings.notes.append(
            "CEL's events not checked: `cel show status` needs the AMI command class, "
            "which pbx-tracker's user does not get (it would allow any CLI command)"
        )
        return findings
    if not any(line.strip() == "CEL Logging: Enabled" for line in lines):
        findings.add("cel.enabled", f"Asterisk's CEL logging is off: enable = yes in {CEL_CONF}")
        return findings
    events = {_after(line, _EVENT_LINE).upper() for line in lines if _EVENT_LINE in line}
    if "ALL" not in events and (missing := [e for e in NEEDED_EVENTS if e not in events]):
        findings.add(
            "cel.enabled", f"CEL does not log {', '.join(missing)}: events = ALL in {CEL_CONF}"
        )
    apps = {_after(line, _APP_LINE).lower() for line in lines if _APP_LINE in line}
    if missing_apps := [app for app in NEEDED_APPS if app not in apps]:
        findings.add(
            "cel.enabled",
            f"CEL does not log the applications {', '.join(missing_apps)} (recordings, dialled "
            f"managers, queues, tracking variables): list them in apps= of {CEL_CONF}, "
            "never apps = all",
        )
    return findings


def _after(line: str, label: str) -> str:
    return line.split(label, 1)[1].strip()
