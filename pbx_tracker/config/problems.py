"""Problem lines: one ``key.path: message`` per thing wrong, never showing a secret.

`ConfigError` carries them all at once; `describe` turns a pydantic error into
a line; `cross_entry_problems` checks what spans several entries (a number or
an extension given twice, routing groups, callbacks, pools, web users).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from pydantic_core import ErrorDetails

from pbx_tracker.attribution.settings import pool_problems
from pbx_tracker.callbacks.settings import callback_problems
from pbx_tracker.config_fields import try_expand_pool_entry
from pbx_tracker.phones import canonical_number, is_dialable
from pbx_tracker.routing.checks import routing_problems
from pbx_tracker.staff import device_key
from pbx_tracker.web.settings import web_user_problems

MISSING_SECRET = (
    "missing (set it in the config, PBX_TRACKER_AMI__SECRET, ami.secret_file "
    "or the ami_secret credential)"
)


class ConfigError(Exception):
    """The configuration cannot be used; `problems` holds one ``key.path: message`` each."""

    def __init__(self, problems: Iterable[str], path: str | os.PathLike[str] | None = None):
        self.problems: list[str] = list(problems)
        self.path = None if path is None else str(path)
        super().__init__("\n".join(self.problems))


_MESSAGES = {
    "extra_forbidden": "unknown key",
    "missing": "missing",
    "int_parsing": "Input should be a valid integer",
    "float_parsing": "Input should be a valid number",
    "path_type": "Input should be a valid path",
}
_WITHOUT_INPUT = frozenset({"extra_forbidden", "missing"})
_SECRET_KEYS = frozenset(
    {"secret", "url", "database_url", "password", "status_token", "password_hash"}
)
_MAX_SHOWN = 60


def _key_path(loc: tuple[int | str, ...]) -> str:
    """``("tracked_numbers", 3, "did")`` -> ``tracked_numbers[3].did``."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path


def describe(error: ErrorDetails, from_env: Mapping[str, str], secrets: list[str]) -> str:
    """One problem line for a pydantic error, never showing a secret value."""
    kind, loc = error["type"], error["loc"]
    if kind == "invalid_key":
        loc = (*loc[:-1], str(loc[-1]))
    path = _key_path(loc)
    message = _MESSAGES.get(kind, error["msg"])
    if path == "ami.secret" and kind == "missing":
        message = MISSING_SECRET
    elif kind not in _WITHOUT_INPUT and not _SECRET_KEYS.intersection(map(str, loc)):
        message += _shown_input(error.get("input"), message, secrets)
    if kind == "string_type" and isinstance(error.get("input"), int | float):
        message += "; put it in quotes"
    env_name = from_env.get(path) or from_env.get(path.partition(".")[0])
    return f"{path}: {message}" + (f" (from {env_name})" if env_name else "")


def _shown_input(value: Any, message: str, secrets: list[str]) -> str:
    """`` (got 'five')`` for a scalar not in ``message`` that holds no secret, else nothing."""
    if not isinstance(value, str | int | float | bool):  # None: the key was left out
        return ""
    repeated = len(str(value)) >= 5 and str(value) in message
    if repeated or any(secret in str(value) for secret in secrets):
        return ""
    shown = repr(value)
    return f" (got {shown[:_MAX_SHOWN] + '...' if len(shown) > _MAX_SHOWN else shown})"


# --- checks across entries ------------------------------------------------------


def _entries(raw: Mapping[str, Any], key: str) -> Iterator[tuple[int, dict[str, Any]]]:
    items = raw.get(key)
    if isinstance(items, list):
        for index, item in enumerate(items):
            if isinstance(item, dict):
                yield index, item


def _did_entries(
    raw: Mapping[str, Any], region: str
) -> Iterator[tuple[str, str, list[tuple[str, str]]]]:
    """(problem key, owner name, [(as written, canonical)]) for every usable number entry:
    tracked numbers, pool numbers, then managers' external numbers."""
    for index, item in _entries(raw, "tracked_numbers"):
        with_numbers = try_expand_pool_entry(item.get("did"), region)
        yield f"tracked_numbers[{index}].did", f"tracked_numbers[{index}]", with_numbers
    for index, pool in _entries(raw, "number_pools"):
        numbers = pool.get("numbers")
        for position, entry in enumerate(numbers if isinstance(numbers, list) else []):
            key = f"number_pools[{index}].numbers[{position}]"
            yield key, key, try_expand_pool_entry(entry, region)
    for index, manager in _entries(raw, "managers"):
        numbers = manager.get("external_numbers")
        for position, entry in enumerate(numbers if isinstance(numbers, list) else []):
            key = f"managers[{index}].external_numbers[{position}]"
            yield key, key, _external_number(entry, region)


def _external_number(entry: Any, region: str) -> list[tuple[str, str]]:
    """[(as written, E.164)] of a phone number; [] for anything else (validation says why)."""
    number = canonical_number(entry, region) if isinstance(entry, str) else None
    return [(entry.strip(), number)] if is_dialable(number) and number else []


def _duplicate_dids(raw: Mapping[str, Any], region: str) -> list[str]:
    """``number_pools[0].numbers[2]: 74951110001 is already tracked_numbers[0]``; the same
    number in two forms (``84951110001``, ``+74951110001``) counts as given twice."""
    owners: dict[str, str] = {}
    problems = []
    for key, owner, numbers in _did_entries(raw, region):
        clashes = [(written, owners[e164]) for written, e164 in numbers if e164 in owners]
        if clashes:
            written, other = clashes[0]
            more = f" (and {len(clashes) - 1} more of this range)" if len(clashes) > 1 else ""
            problems.append(f"{key}: {written} is already {other}{more}")
        for _, e164 in numbers:
            owners.setdefault(e164, owner)
    return problems


def _duplicate_values(raw: Mapping[str, Any], section: str, field: str) -> list[str]:
    """``managers[2].extension: 101 is already managers[0]``."""
    owners: dict[str, str] = {}
    problems = []
    for index, item in _entries(raw, section):
        value = item.get(field)
        if not isinstance(value, str):
            continue
        if value.strip() in owners:
            problems.append(
                f"{section}[{index}].{field}: {value} is already {owners[value.strip()]}"
            )
        owners.setdefault(value.strip(), f"{section}[{index}]")
    return problems


def _duplicate_devices(raw: Mapping[str, Any]) -> list[str]:
    """``managers[1].devices[0]: PJSIP/101 is already managers[0]``."""
    owners: dict[str, str] = {}
    problems = []
    for index, manager in _entries(raw, "managers"):
        devices = manager.get("devices")
        for position, device in enumerate(devices if isinstance(devices, list) else []):
            if not isinstance(device, str):
                continue
            key, owner = device_key(device.strip()), f"managers[{index}]"
            if owners.get(key, owner) != owner:
                problems.append(f"{owner}.devices[{position}]: {device} is already {owners[key]}")
            owners.setdefault(key, owner)
    return problems


def cross_entry_problems(raw: Mapping[str, Any], region: str) -> list[str]:
    return [
        *_duplicate_dids(raw, region),
        *_duplicate_values(raw, "number_pools", "name"),
        *_duplicate_values(raw, "managers", "extension"),
        *_duplicate_devices(raw),
        *routing_problems(raw, region),
        *callback_problems(raw),
        *pool_problems(raw, region),
        *web_user_problems(raw),
    ]
