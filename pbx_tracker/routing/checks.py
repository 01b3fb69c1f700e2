"""Routing problems that span config entries, as ``key.path: message`` lines.

They run on the raw (unvalidated) data, like the config loader's other
cross-entry checks, so they are reported together with every other problem;
values of the wrong type are left to validation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from pbx_tracker.config_fields import expand_pool_entry

_END_CYCLE = "end it with null (the missed-call path)"
Entries = list[tuple[int, dict[str, Any]]]


def routing_problems(raw: Mapping[str, Any], region: str) -> list[str]:
    """Every cross-entry problem of the ``routing`` section."""
    routing = raw.get("routing")
    if not isinstance(routing, dict):
        return []
    groups = _groups(routing)
    names = _first_index(groups)
    return [
        *_duplicate_names(groups),
        *_default_group(routing, names),
        *_overflow_problems(groups, names),
        *_member_problems(raw, groups),
        *_crm_owner_problems(raw, groups),
        *_number_problems(raw, routing, names, region),
    ]


def _items(container: Mapping[str, Any], key: str) -> Iterator[tuple[int, dict[str, Any]]]:
    items = container.get(key)
    for index, item in enumerate(items if isinstance(items, list) else []):
        if isinstance(item, dict):
            yield index, item


def _text(item: Mapping[str, Any], key: str) -> str | None:
    value = item.get(key)
    return value.strip() if isinstance(value, str) and value.strip() else None


def _groups(routing: Mapping[str, Any]) -> Entries:
    return list(_items(routing, "groups"))


def _first_index(groups: Entries) -> dict[str, int]:
    names: dict[str, int] = {}
    for index, group in groups:
        name = _text(group, "name")
        if name is not None:
            names.setdefault(name, index)
    return names


def _duplicate_names(groups: Entries) -> list[str]:
    seen: dict[str, int] = {}
    problems = []
    for index, group in groups:
        name = _text(group, "name")
        if name is not None and name in seen:
            problems.append(
                f"routing.groups[{index}].name: {name} is already routing.groups[{seen[name]}]"
            )
        seen.setdefault(name or "", index)
    return problems


def _default_group(routing: Mapping[str, Any], names: Mapping[str, int]) -> list[str]:
    name = _text(routing, "default_group")
    if name is None or name in names:
        return []
    return [f"routing.default_group: no group named {name!r}"]


def _overflow_problems(groups: Entries, names: dict[str, int]) -> list[str]:
    """Overflows to unknown groups, and each overflow cycle once (at its first group)."""
    overflow = {_text(g, "name"): _text(g, "overflow") for _, g in groups}
    problems, reported = [], set()
    for index, group in groups:
        target = _text(group, "overflow")
        if target is not None and target not in names:
            problems.append(f"routing.groups[{index}].overflow: no group named {target!r}")
    for name in names:
        cycle = _cycle_from(name, overflow)
        if cycle and frozenset(cycle) not in reported:
            reported.add(frozenset(cycle))
            path = " -> ".join([*cycle, cycle[0]])
            problems.append(
                f"routing.groups[{names[cycle[0]]}].overflow: {path} is a cycle; {_END_CYCLE}"
            )
    return problems


def _cycle_from(name: str, overflow: Mapping[str | None, str | None]) -> list[str]:
    """The overflow cycle reached from ``name`` (its groups in order), or []."""
    path: list[str] = []
    current: str | None = name
    while current is not None and current in overflow and current not in path:
        path.append(current)
        current = overflow[current]
    return [] if current is None or current not in path else path[path.index(current) :]


def _member_problems(raw: Mapping[str, Any], groups: Entries) -> list[str]:
    """Members who are no managers, and groups nobody is in."""
    managers = [m for _, m in _items(raw, "managers")]
    extensions = {ext for ext in (_text(m, "extension") for m in managers) if ext}
    problems = []
    for index, group in groups:
        members, name = group.get("members"), _text(group, "name")
        if isinstance(members, list):
            for position, member in enumerate(members):
                if isinstance(member, str) and member.strip() not in extensions:
                    problems.append(
                        f"routing.groups[{index}].members[{position}]: {member} is no manager "
                        "(not in managers)"
                    )
        elif members is None:
            members = [m for m in managers if name is not None and _text(m, "group") == name]
        if not members and (_text(group, "strategy") or "").lower() != "queue":
            problems.append(
                f"routing.groups[{index}]: nobody is in this group; list members or set "
                f"managers' group: {name}"
            )
    return problems


def _crm_owner_problems(raw: Mapping[str, Any], groups: Entries) -> list[str]:
    """Groups ringing the caller's CRM owner with no CRM that could name one."""
    crm = raw.get("crm")
    if isinstance(crm, dict) and any(crm.get(name) is not None for name in _OWNER_CRMS):
        return []
    return [
        f"routing.groups[{index}].crm_owner: needs crm.bitrix24 or crm.amocrm"
        for index, group in groups
        if _switched_on(group.get("crm_owner"))
    ]


_OWNER_CRMS = ("bitrix24", "amocrm")


def _switched_on(value: Any) -> bool:
    """True as validation will read it (true, or yes/on/1 written as text)."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "on", "1", "y", "t")
    return value is True or value == 1


def _number_problems(
    raw: Mapping[str, Any], routing: Mapping[str, Any], names: Mapping[str, int], region: str
) -> list[str]:
    """Rules naming unknown groups, untracked numbers, unknown pools or sources, or repeats."""
    known = _known_targets(raw, region)
    problems: list[str] = []
    seen: dict[tuple[str, str], int] = {}
    for index, rule in _items(routing, "numbers"):
        group = _text(rule, "group")
        if group is not None and group not in names:
            problems.append(f"routing.numbers[{index}].group: no group named {group!r}")
        for kind in ("did", "pool", "source"):
            value = _rule_value(rule, kind, region)
            if value is None:
                continue
            if value not in known[kind]:
                problems.append(f"routing.numbers[{index}].{kind}: {_UNKNOWN[kind](value)}")
            elif (kind, value) in seen:
                other = seen[(kind, value)]
                problems.append(
                    f"routing.numbers[{index}].{kind}: {value} already has a rule, "
                    f"routing.numbers[{other}]"
                )
            seen.setdefault((kind, value), index)
    return problems


_UNKNOWN: dict[str, Callable[[str], str]] = {
    "did": lambda did: f"{did} is not a tracked number (add it to tracked_numbers or a pool)",
    "pool": lambda pool: f"no number pool named {pool!r}",
    "source": lambda source: f"no tracked number or pool has source {source!r}",
}


def _rule_value(rule: Mapping[str, Any], kind: str, region: str) -> str | None:
    value = _text(rule, kind)
    if value is None or kind != "did":
        return value
    numbers = _expand(value, region)
    return numbers[0] if len(numbers) == 1 else None


def _expand(entry: Any, region: str) -> list[str]:
    if not isinstance(entry, str):
        return []
    try:
        return [e164 for _, e164 in expand_pool_entry(entry, region)]
    except ValueError:
        return []


def _known_targets(raw: Mapping[str, Any], region: str) -> dict[str, set[str]]:
    """Tracked DIDs (E.164), pool names and sources the config defines."""
    known: dict[str, set[str]] = {"did": set(), "pool": set(), "source": set()}
    for _, tracked in _items(raw, "tracked_numbers"):
        known["did"].update(_expand(tracked.get("did"), region))
        known["source"].add(_text(tracked, "source") or "")
    for _, pool in _items(raw, "number_pools"):
        numbers = pool.get("numbers")
        for entry in numbers if isinstance(numbers, list) else []:
            known["did"].update(_expand(entry, region))
        known["pool"].add(_text(pool, "name") or "")
        known["source"].add(_text(pool, "source") or "pool")
    return known
