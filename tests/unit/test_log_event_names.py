"""Log event names: `<room>.<what_happened>`, the room a package or top-level module.

One rule makes the journal searchable by part (``journalctl -u pbx-tracker |
grep '"event": "store.'``).  The package's source is read with `ast`: every call
of a logger's level method (``log.info(...)``, ``self.log.warning(...)``, a
bound logger's too) names its event with a literal, or an f-string whose
literal start is the room; anything else could not be checked here.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pbx_tracker

PACKAGE = Path(pbx_tracker.__file__).resolve().parent
LEVELS = frozenset(
    {"debug", "info", "warning", "warn", "error", "exception", "critical", "fatal", "msg"}
)
LOGGER = re.compile(r"(^|_)log(ger)?$")  # log, self.log, session.log, _stdlib_log, logger
WHAT_HAPPENED = re.compile(r"[a-z0-9_]+")


def rooms() -> frozenset[str]:
    """The package's subpackages (folders of modules) and top-level modules."""
    packages = {path.parent.name for path in PACKAGE.glob("*/*.py")}
    modules = {path.stem for path in PACKAGE.glob("*.py") if not path.stem.startswith("__")}
    return frozenset(packages | modules)


@dataclass(frozen=True)
class LogCall:
    where: str
    call: ast.Call

    @property
    def event(self) -> ast.expr | None:
        return self.call.args[0] if self.call.args else None


def log_calls() -> Iterator[LogCall]:
    """Every call of a logger's level method in the package, with its place."""
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            if node.func.attr in LEVELS and LOGGER.search(_last_name(node.func.value)):
                yield LogCall(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}", node)


def _last_name(receiver: ast.expr) -> str:
    if isinstance(receiver, ast.Attribute):
        return receiver.attr
    return receiver.id if isinstance(receiver, ast.Name) else ""


def name_problem(event: ast.expr | None, known: frozenset[str]) -> str | None:
    """Why an event name breaks the rule (None when it follows it)."""
    if isinstance(event, ast.Constant) and isinstance(event.value, str):
        room, _, what = event.value.partition(".")
        if room in known and WHAT_HAPPENED.fullmatch(what):
            return None
        return f"{event.value!r} is not <room>.<what_happened>"
    if isinstance(event, ast.JoinedStr) and _room_first(event, known):
        return None
    shown = ast.unparse(event) if event is not None else "nothing"
    return f"{shown} is not a literal <room>.<what_happened>"


def _room_first(event: ast.JoinedStr, known: frozenset[str]) -> bool:
    """An f-string naming its room literally, with only snake_case around its fields."""
    parts = [part.value for part in event.values if isinstance(part, ast.Constant)]
    if not parts or not isinstance(event.values[0], ast.Constant):
        return False
    room, dot, what = str(parts[0]).partition(".")
    literal = [what, *map(str, parts[1:])]
    return bool(dot) and room in known and all(re.fullmatch(r"[a-z0-9_]*", p) for p in literal)


def test_every_logged_event_is_named_room_first() -> None:
    """Every line the daemon logs is named `<room>.<what_happened>`, so an admin greps one part."""
    known = rooms()
    found = [(call.where, name_problem(call.event, known)) for call in log_calls()]
    assert len(found) > 100, "the walk found too few log calls: is LOGGER still right?"
    assert [f"{where}: {problem}" for where, problem in found if problem] == []


def test_no_log_call_passes_its_own_event_key() -> None:
    """No logged line fails for want of a name: no log call passes `event=`, the name's key."""
    clashing = [
        call.where
        for call in log_calls()
        if any(keyword.arg == "event" for keyword in call.call.keywords)
    ]
    assert clashing == []
