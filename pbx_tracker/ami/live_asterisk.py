"""What the self-check asks the live Asterisk, with the least privilege that answers.

`LiveAsterisk` first asks ``ListCommands``, which needs no class and lists
every action the AMI user may run (``main/manager.c``: an action is listed when
the user holds one of its classes, or it needs none), each with the classes it
needs: ``Getvar: Gets a channel variable or function value. (Priv:
call,reporting)``.  From that it knows, before asking anything else, whether an
action would be refused, and which channel drivers registered their own
actions (``IAXpeers`` exists only while chan_iax2 is loaded).

The other questions, and the class each needs (the shipped user has
``write = originate,reporting``):

- ``Getvar`` of ``DEVICE_STATE(<device>)`` (call or reporting): ``INVALID``
  when no loaded channel driver knows the device (no such driver, or no such
  endpoint / peer), else its state;
- ``ShowDialPlan`` with ``Context`` (config or reporting): ``Did not find
  context NAME`` when it does not exist;
- ``Command`` (command, not granted): ``core show channeltypes`` and ``cel
  show status``; ``ModuleCheck`` (system, not granted): one module.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from pbx_tracker.calls.events import AmiEvent

__all__ = ["Findings", "LiveAsterisk", "Problem", "Send"]

DIALPLAN_TIMEOUT = 30.0  # the whole dialplan of a FreePBX site is tens of thousands of lines
_PRIV = re.compile(r"\(Priv: ([^)]*)\)\s*$")
_NOT_ACTIONS = frozenset({"response", "actionid", "message", "eventlist"})


class Send(Protocol):
    """`AmiListener.send_action`: every message of the answer (an error is returned)."""

    def __call__(
        self,
        action: Mapping[str, str],
        *,
        timeout: float = ...,
    ) -> Awaitable[list[AmiEvent]]: ...


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing to fix: the config key it concerns, what is wrong and the fix."""

    key: str
    text: str

    def __str__(self) -> str:
        return f"{self.key}: {self.text}"


@dataclass(slots=True)
class Findings:
    """Problems found, and notes on what could not be checked (and why)."""

    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, key: str, text: str) -> None:
        self.problems.append(Problem(key, text))

    def extend(self, other: Findings) -> None:
        self.problems += other.problems
        self.notes += other.notes


class LiveAsterisk:
    """The AMI questions of the self-check, over one logged-in session's ``send``."""

    def __init__(self, send: Send, actions: Mapping[str, str] | None = None) -> None:
        """``actions``: action (lower case) -> classes it needs, as ``ListCommands``
        gave them; None when unknown (every action is then simply tried)."""
        self._send = send
        self.actions = actions
        self._states: dict[str, str | None] = {}
        self._contexts: dict[str, bool | None] = {}
        self._all_contexts: set[str] | None = None

    @classmethod
    async def ask(cls, send: Send) -> LiveAsterisk:
        """Learn what this user may run (``ListCommands``), then answer questions."""
        answer = (await send({"Action": "ListCommands"}))[0]
        if answer.get("Response") != "Success":
            return cls(send)
        actions = {
            key.lower(): match.group(1).strip()
            for key, value in answer.fields.items()
            if key.lower() not in _NOT_ACTIONS and (match := _PRIV.search(value))
        }
        return cls(send, actions)

    def may(self, action: str) -> bool:
        """Whether the user may run ``action`` (True when that is unknown)."""
        return self.actions is None or action.lower() in self.actions

    def lists(self, action: str) -> bool:
        """Whether ``ListCommands`` named ``action`` (False when it was not asked)."""
        return self.actions is not None and action.lower() in self.actions

    def privilege_listed(self, classes: str) -> bool:
        """Whether some listed action needs exactly ``classes``: then every action
        needing them would be listed too."""
        return self.actions is not None and classes in self.actions.values()

    async def command(self, line: str) -> list[str] | None:
        """A CLI command's output lines; None when it was refused or failed."""
        answer = (await self._send({"Action": "Command", "Command": line}))[0]
        if answer.get("Response") != "Success":
            return None
        return answer.get("Output").splitlines()

    async def module_loaded(self, module: str) -> bool | None:
        """``ModuleCheck``: True / False, None when refused."""
        answer = (await self._send({"Action": "ModuleCheck", "Module": module}))[0]
        if answer.get("Response") == "Success":
            return True
        return False if answer.get("Message") == "Module not loaded" else None

    async def device_state(self, device: str) -> str | None:
        """``DEVICE_STATE(device)`` (``INVALID``: no loaded driver knows it); None when
        the user may not ask."""
        if device not in self._states:
            self._states[device] = await self._device_state(device)
        return self._states[device]

    async def _device_state(self, device: str) -> str | None:
        if not self.may("Getvar"):
            return None
        variable = f"DEVICE_STATE({device})"
        answer = (await self._send({"Action": "Getvar", "Variable": variable}))[0]
        if answer.get("Response") != "Success":
            return None
        return answer.get("Value").strip().upper() or None

    async def context_exists(self, name: str) -> bool | None:
        """Whether the dialplan has the context; None when the user may not ask."""
        if name not in self._contexts:
            self._contexts[name] = await self._context_exists(name)
        return self._contexts[name]

    async def _context_exists(self, name: str) -> bool | None:
        if not self.may("ShowDialPlan"):
            return None
        answer = (await self._send({"Action": "ShowDialPlan", "Context": name}))[0]
        if answer.get("Response") == "Success":
            return True
        message = answer.get("Message")
        if message.startswith("Did not find context"):
            return False
        return True if message == "No dialplan found" else None  # it exists, empty

    async def all_contexts(self) -> set[str] | None:
        """Every context of the dialplan (one big ``ShowDialPlan``); None when refused."""
        if self._all_contexts is None and self.may("ShowDialPlan"):
            action = {"Action": "ShowDialPlan"}
            messages = await self._send(action, timeout=DIALPLAN_TIMEOUT)
            if messages[0].get("Response") == "Success":
                self._all_contexts = {
                    m.get("Context") for m in messages if m.name == "ListDialplan"
                }
        return self._all_contexts
