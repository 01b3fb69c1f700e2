"""Do the managers' dial strings name drivers and devices this Asterisk has?

The trap it catches: the default ``routing.dial_template`` is
``PJSIP/{extension}``; on a site without PJSIP the config is valid and every
routed call ends unavailable.  Each dial string the router and ring-me use
(``routing.dial_template`` for managers without ``devices`` or ``dial``,
``managers[i].devices[j]``, ``managers[i].dial``) is checked twice:

1. its channel driver is loaded.  The loaded drivers are learnt with the least
   privilege that tells: ``core show channeltypes`` (command class) lists them
   all, ``ModuleCheck`` (system) answers per module, and otherwise
   ``ListCommands`` shows the drivers that register actions of classes the user
   holds: ``IAXpeers`` / ``SIPpeers`` (system or reporting) exist exactly while
   chan_iax2 / chan_sip are loaded; chan_pjsip's ``PJSIPShowEndpoints`` needs
   system, so with the shipped user PJSIP is learnt from step 2 alone;
2. Asterisk knows each manager's device: ``DEVICE_STATE(PJSIP/101)`` is
   ``INVALID`` when no loaded driver has that endpoint or peer.

The fix names a loaded driver that knows every manager's device, when one does.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pbx_tracker.ami.live_asterisk import Findings, LiveAsterisk, Problem

if TYPE_CHECKING:
    from pbx_tracker.config import Settings

__all__ = ["DialTarget", "Drivers", "check_dial_strings", "dial_targets", "learn_drivers"]

TEMPLATE_KEY = "routing.dial_template"
MODULES = {
    "PJSIP": "chan_pjsip",
    "IAX2": "chan_iax2",
    "SIP": "chan_sip",
    "DAHDI": "chan_dahdi",
    "SKINNY": "chan_skinny",
    "MGCP": "chan_mgcp",
    "UNISTIM": "chan_unistim",
    "MOTIF": "chan_motif",
}
# a manager action each driver registers, and the classes it needs (None: not sure,
# so its absence from ListCommands proves nothing)
MARKERS = {
    "IAX2": ("IAXpeers", "system,reporting"),
    "SIP": ("SIPpeers", "system,reporting"),
    "PJSIP": ("PJSIPShowEndpoints", "system"),
    "DAHDI": ("DAHDIShowChannels", None),
}
BUILT_IN = frozenset({"LOCAL"})
NOT_PHONES = frozenset(
    {"LOCAL", "ANNOUNCER", "RECORDER", "CBANN", "CBREC", "SURROGATE", "MULTICASTRTP"}
    | {"UNICASTRTP", "CONSOLE", "WEBSOCKET", "AUDIOSOCKET"}
)
_REGISTERED = re.compile(r"^\d+ channel drivers? registered")


@dataclass(frozen=True, slots=True)
class Drivers:
    """The channel drivers known loaded (upper case -> as Asterisk names them), known
    absent, and whether ``loaded`` is every one of them."""

    loaded: dict[str, str] = field(default_factory=dict)
    absent: frozenset[str] = frozenset()
    complete: bool = False

    def is_absent(self, tech: str) -> bool:
        wanted = tech.upper()
        if wanted in BUILT_IN or wanted in self.loaded:
            return False
        return self.complete or wanted in self.absent

    def is_loaded(self, tech: str) -> bool:
        return tech.upper() in BUILT_IN or tech.upper() in self.loaded

    def phones(self) -> list[str]:
        return sorted(name for key, name in self.loaded.items() if key not in NOT_PHONES)

    def loaded_clause(self) -> str:
        phones = self.phones()
        return f" (loaded: {', '.join(phones)})" if phones else ""


@dataclass(frozen=True, slots=True)
class DialTarget:
    """A configured dial string and, per manager it rings, what it dials."""

    key: str
    value: str
    dials: tuple[tuple[str, str], ...]

    def parts(self) -> Iterator[tuple[str, str]]:
        """(manager, one device of the dial string) for every manager."""
        for name, dial in self.dials:
            for part in dial.split("&"):
                if part.strip():
                    yield name, part.strip().partition(",")[0]


def dial_targets(settings: Settings) -> list[DialTarget]:
    """Every configured dial string with what it dials for each manager."""
    targets: list[DialTarget] = []
    templated = []
    for i, manager in enumerate(settings.managers):
        if manager.dial:
            targets.append(
                DialTarget(f"managers[{i}].dial", manager.dial, ((manager.name, manager.dial),))
            )
        elif manager.devices:
            targets += [
                DialTarget(f"managers[{i}].devices[{j}]", device, ((manager.name, device),))
                for j, device in enumerate(manager.devices)
            ]
        else:
            templated.append(manager)
    if templated:
        template = settings.routing.dial_template
        dials = tuple((m.name, template.format(extension=m.extension)) for m in templated)
        targets.insert(0, DialTarget(TEMPLATE_KEY, template, dials))
    return targets


async def learn_drivers(asterisk: LiveAsterisk) -> Drivers:
    """The loaded channel drivers, as completely as this user may learn them."""
    if asterisk.may("Command"):
        lines = await asterisk.command("core show channeltypes")
        if lines is not None:
            return Drivers(_channel_types(lines), complete=True)
    if asterisk.may("ModuleCheck"):
        found = {tech: await asterisk.module_loaded(module) for tech, module in MODULES.items()}
        if any(state is not None for state in found.values()):
            loaded = {tech: tech for tech, state in found.items() if state}
            return Drivers(loaded, frozenset(t for t, state in found.items() if state is False))
    return _listed_drivers(asterisk)


def _channel_types(lines: list[str]) -> dict[str, str]:
    types = {}
    for line in lines:
        words = line.split()
        if not words or words[0] == "Type" or words[0].startswith("-"):
            continue
        if not _REGISTERED.match(line.strip()):
            types[words[0].upper()] = words[0]
    return types


def _listed_drivers(asterisk: LiveAsterisk) -> Drivers:
    loaded, absent = {}, set()
    for tech, (action, classes) in MARKERS.items():
        if asterisk.lists(action):
            loaded[tech] = tech
        elif classes is not None and asterisk.privilege_listed(classes):
            absent.add(tech)
    return Drivers(loaded, frozenset(absent))


async def check_dial_strings(settings: Settings, asterisk: LiveAsterisk) -> Findings:
    """A problem per dial string that names a driver or device Asterisk lacks."""
    findings = Findings()
    targets = dial_targets(settings)
    if not targets:
        return findings
    drivers = await learn_drivers(asterisk)
    for target in targets:
        problem = await _check_target(target, drivers, asterisk)
        if problem is not None:
            findings.problems.append(problem)
    if not asterisk.may("Getvar"):
        findings.notes.append(
            "managers' devices not checked: the AMI user may not run Getvar (reporting class)"
        )
    return findings


async def _check_target(
    target: DialTarget, drivers: Drivers, asterisk: LiveAsterisk
) -> Problem | None:
    parts = list(target.parts())
    absent = sorted({_tech(part) for _, part in parts if drivers.is_absent(_tech(part))})
    if absent:
        why = f"{_module(absent[0])} is not loaded on this Asterisk{drivers.loaded_clause()}"
        fix = await _fix(target, absent[0], drivers, asterisk)
        return Problem(target.key, f"{target.value} — {why}; {fix}")
    states = {part: await asterisk.device_state(part) for _, part in parts}
    unknown = [(name, part) for name, part in parts if states[part] == "INVALID"]
    if not unknown:
        return None
    tech = _tech(unknown[0][1])
    found = [part for part, state in states.items() if state not in (None, "INVALID")]
    if drivers.is_loaded(tech) or any(_tech(part) == tech for part in found):
        why = f"{_module(tech)} has no such endpoint"
        fix = _add_endpoint(target)
    else:
        why = f"{_module(tech)} is not loaded on this Asterisk or has no such endpoints"
        why += drivers.loaded_clause()
        fix = await _fix(target, tech, drivers, asterisk)
    devices = _devices(target, unknown)
    return Problem(
        target.key,
        f"{target.value} — Asterisk knows no {devices} (DEVICE_STATE is INVALID): {why}; {fix}",
    )


def _devices(target: DialTarget, unknown: list[tuple[str, str]], shown: int = 3) -> str:
    """The unknown devices (with their managers for the template), the first few."""
    named = [part if target.key != TEMPLATE_KEY else f"{part} ({name})" for name, part in unknown]
    more = len(named) - shown
    return ", ".join(named[:shown]) + (f" and {more} more" if more > 0 else "")


def _add_endpoint(target: DialTarget) -> str:
    if target.key == TEMPLATE_KEY:
        return (
            "add the endpoint to Asterisk, or give that manager the devices they answer on "
            "(managers[].devices)"
        )
    return f"add the endpoint to Asterisk, or set {target.key} to a device this Asterisk knows"


async def _fix(target: DialTarget, tech: str, drivers: Drivers, asterisk: LiveAsterisk) -> str:
    """Which value to set: another loaded driver that knows every manager's device."""
    others = [name for name in drivers.phones() if name.upper() != tech]
    for other in others:
        verdicts = [
            await asterisk.device_state(_with_tech(part, tech, other))
            for _, part in target.parts()
            if _tech(part) == tech
        ]
        if all(v not in (None, "INVALID") for v in verdicts) or (
            len(others) == 1 and None in verdicts
        ):
            return f"set {target.key} to {_with_tech(target.value, tech, other)}"
    if target.key == TEMPLATE_KEY:
        return (
            "set routing.dial_template to the channel driver the phones use, "
            "or give each manager devices (managers[].devices)"
        )
    return f"set {target.key} to a device this Asterisk knows"


def _tech(part: str) -> str:
    return part.partition("/")[0].strip().upper()


def _module(tech: str) -> str:
    return MODULES.get(tech, f"the {tech} channel driver")


def _with_tech(dial: str, tech: str, other: str) -> str:
    """``dial`` with every device of ``tech`` moved to the driver ``other``."""
    parts = dial.split("&")
    return "&".join(
        other + part[part.index("/") :] if _tech(part) == tech else part for part in parts
    )
