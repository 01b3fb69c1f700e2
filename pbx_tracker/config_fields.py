"""Value types shared by the configuration models (phone numbers, extensions, paths).

Each is an annotated type that validates and normalises one value and fails
with a message fit for a ``key.path: message`` problem line.  Phone numbers are
read with the ``phone_region`` and relative paths resolved against the
``base_dir`` that `pbx_tracker.config.settings_from_mapping` passes in the
validation context.

Two kinds of numbers: a `Did` is a phone number outside the PBX (a manager's
mobile, a caller ID, a pool's fallback), stored in E.164; a `TrackedDid` (and
each entry of a pool) is a number as the PBX sees it, stored by the one rule of
`pbx_tracker.phones.canonical_number`: a phone number in any form becomes
E.164, a short internal number (a ring group's or queue's ``401``) stays its
digits.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    SecretStr,
    StringConstraints,
    ValidationInfo,
)
from pydantic_core import PydanticCustomError

from pbx_tracker.phones import (
    canonical_number,
    is_known_region,
    is_short_number,
    read_phone_number,
)

DEFAULT_REGION = "RU"
MAX_RANGE_SIZE = 1000


class ConfigModel(BaseModel):
    """Base of every configuration model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


# --- value checks shared by the models and the cross-entry checks ----------

_RANGE = re.compile(r"(\+?\d{5,})-(\+?\d{5,})")
_EXTENSION = re.compile(r"\d{1,10}")
_DEVICE = re.compile(r"[A-Za-z0-9_]+/\S+")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")
_UNREADABLE = "not a phone number, nor an internal number of 1 to 6 digits"


def problem(kind: str, message: str) -> PydanticCustomError:
    """A validation error whose message pydantic shows as is (no "Value error, ")."""
    return PydanticCustomError(kind, message)


def _did(text: str, region: str) -> str:
    """``text`` as an E.164 phone number; ValueError when it is not one."""
    if is_short_number(text.strip()):
        raise ValueError("an internal number (1 to 6 digits); a phone number is needed here")
    number = read_phone_number(text, region)
    if number is None:
        raise ValueError("not a phone number")
    return number


def _tracked_did(text: str, region: str) -> str:
    """``text`` by the one rule (E.164, or a short number's digits); ValueError if unreadable."""
    number = canonical_number(text, region)
    if number is None:
        raise ValueError(_UNREADABLE)
    return number


def _range_bounds(first: str, last: str) -> range:
    """The numbers of ``first-last``; ValueError unless same length, ascending, small."""
    if len(first) != len(last):
        raise ValueError(f"range {first}-{last}: both ends must have the same length")
    low, high = int(first.lstrip("+")), int(last.lstrip("+"))
    if low > high:
        raise ValueError(f"range {first}-{last}: the first number must not exceed the last")
    if high - low + 1 > MAX_RANGE_SIZE:
        raise ValueError(f"range {first}-{last}: more than {MAX_RANGE_SIZE} numbers")
    return range(low, high + 1)


def expand_pool_entry(entry: str, region: str) -> list[tuple[str, str]]:
    """(as written, canonical) for a DID or a range of phone numbers ``74951110010-74951110019``.

    A DID follows `canonical_number` (E.164, or a short number's digits).
    ValueError with a message when the entry is not usable.
    """
    compact = re.sub(r"\s", "", entry)
    match = _RANGE.fullmatch(compact)
    if match is None:
        return [(entry.strip(), _tracked_did(entry, region))]
    first, last = match.groups()
    plus, width = ("+" if first.startswith("+") else ""), len(first.lstrip("+"))
    written = [f"{plus}{number:0{width}d}" for number in _range_bounds(first, last)]
    try:
        return [(text, _did(text, region)) for text in written]
    except ValueError:
        raise ValueError(f"range {first}-{last}: not phone numbers") from None


def context_region(info: ValidationInfo) -> str:
    """The phone region `settings_from_mapping` passed in the validation context."""
    context = info.context
    if isinstance(context, Mapping) and isinstance(context.get("phone_region"), str):
        return str(context["phone_region"])
    return DEFAULT_REGION


def context_base_dir(info: ValidationInfo) -> Path:
    context = info.context
    if isinstance(context, Mapping) and isinstance(context.get("base_dir"), Path):
        return Path(context["base_dir"])
    return Path.cwd()


def _check_did(value: str, info: ValidationInfo) -> str:
    try:
        return _did(value, context_region(info))
    except ValueError as exc:
        raise problem("phone_number", str(exc)) from None


def _check_tracked_did(value: str, info: ValidationInfo) -> str:
    try:
        return _tracked_did(value, context_region(info))
    except ValueError as exc:
        raise problem("phone_number", str(exc)) from None


def _check_pool_entry(value: str, info: ValidationInfo) -> str:
    try:
        expand_pool_entry(value, context_region(info))
    except ValueError as exc:
        raise problem("pool_entry", str(exc)) from None
    return value


def try_expand_pool_entry(entry: Any, region: str) -> list[tuple[str, str]]:
    """`expand_pool_entry`, or [] for anything unusable (reported by validation)."""
    if not isinstance(entry, str):
        return []
    try:
        return expand_pool_entry(entry, region)
    except ValueError:
        return []


def expand_pool(entries: list[str], info: ValidationInfo) -> list[str]:
    region = context_region(info)
    numbers = (e164 for entry in entries for _, e164 in expand_pool_entry(entry, region))
    return list(dict.fromkeys(numbers))


def _check_region(value: str) -> str:
    if not is_known_region(value):
        raise problem("phone_region", "unknown region, use a two-letter code such as RU")
    return value


def check_pattern(pattern: re.Pattern[str], message: str) -> AfterValidator:
    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise problem("format", message)
        return value

    return AfterValidator(check)


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    path = value.expanduser()
    return path if path.is_absolute() else context_base_dir(info) / path


def _read_secret_file(value: Any, info: ValidationInfo) -> SecretStr:
    """The secret kept in the file ``value`` names (a systemd credential, a file only the
    service's user reads): its text without the line end.  The path shows in a problem,
    the content never."""
    if not isinstance(value, str | Path) or not str(value).strip():
        raise problem("secret_file", "must be the path of a file holding the secret")
    path = _resolve_path(Path(str(value).strip()), info)
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else "unreadable"
        raise problem("secret_file", f"cannot read {path}: {reason}") from None
    if not text:
        raise problem("secret_file", f"{path} is empty")
    return SecretStr(text)


def _check_http_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise problem("http_url", "must start with https:// (or http://)")
    return value


def upper_text(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


def lower_text(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


NonEmptyStr = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
Did = Annotated[str, AfterValidator(_check_did)]
TrackedDid = Annotated[str, AfterValidator(_check_tracked_did)]
PoolEntry = Annotated[str, AfterValidator(_check_pool_entry)]
Region = Annotated[str, BeforeValidator(upper_text), AfterValidator(_check_region)]
Extension = Annotated[str, check_pattern(_EXTENSION, "must be 1 to 10 digits")]
Device = Annotated[str, check_pattern(_DEVICE, "must look like TECH/name, e.g. PJSIP/101")]
Email = Annotated[str, check_pattern(_EMAIL, "not an email address")]
ResolvedPath = Annotated[Path, AfterValidator(_resolve_path)]
HttpUrl = Annotated[NonEmptyStr, AfterValidator(_check_http_url)]
# a path in the YAML; the setting's value is the secret read from that file
SecretFile = Annotated[SecretStr, BeforeValidator(_read_secret_file)]
