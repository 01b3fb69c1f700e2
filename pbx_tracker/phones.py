"""Phone numbers as Asterisk delivers them, turned into E.164.

Asterisk hands over caller IDs and DIDs in whatever form the carrier used:
``79161234501``, ``89161234501`` (Russian trunk prefix 8), ``+7 (916)
123-45-01``, ``<unknown>``, or an internal extension such as ``101``.  Everything
that is a phone number becomes ``+79161234501``; hidden callers become ``None``;
anything else is kept as Asterisk said it, so a record still shows it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import phonenumbers
from phonenumbers import PhoneNumber, PhoneNumberFormat, ValidationResult

__all__ = ["display_number", "is_dialable", "is_known_region", "normalize_number"]

_HIDDEN = frozenset({"", "<unknown>", "unknown", "anonymous", "restricted", "unavailable"})
_FORMATTING = re.compile(r"[\s\-().]")
_DIALLED = re.compile(r"\+?\d+")
_E164 = re.compile(r"\+[1-9]\d{1,14}")


def normalize_number(raw: str | None, region: str) -> str | None:
    """Return ``raw`` in E.164, ``None`` for a hidden caller, else ``raw`` stripped.

    ``region`` (``"RU"``) decides how numbers without a country code are read.
    Candidates are tried in order — as dialled in ``region``, as digits with a
    ``+`` in front, without a leading ``00`` — and the first valid one wins,
    else the first one of a possible length.  Answers are cached (parsing costs
    tens of microseconds, and the same callers and DIDs come back all day).
    """
    if raw is None:
        return None
    key = (raw, region)
    if key not in _CACHE:
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.clear()
        number = _CACHE[key] = _normalize(raw, region)
        if number is not None and is_dialable(number):
            _CACHE[(number, region)] = number  # E.164 reads back as itself
    return _CACHE[key]


_CACHE: dict[tuple[str, str], str | None] = {}
_CACHE_SIZE = 65536


def _normalize(raw: str, region: str) -> str | None:
    text = raw.strip()
    if text.lower() in _HIDDEN:
        return None
    dialled = _FORMATTING.sub("", text)
    if not _DIALLED.fullmatch(dialled):
        return text
    number = _best_candidate(_candidates(dialled, region))
    if number is None:
        return text
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


def is_dialable(number: str | None) -> bool:
    """True when ``number`` is an E.164 string (``+`` and 2 to 15 digits)."""
    return number is not None and _E164.fullmatch(number) is not None


def display_number(e164: str | None, region: str) -> str:
    """Format for people: national form for numbers of ``region``, else international.

    Strings that are not phone numbers (extensions, ``None``) come back as they are
    (``None`` as an empty string).
    """
    if not e164:
        return ""
    try:
        number = phonenumbers.parse(e164, region.upper())
    except phonenumbers.NumberParseException:
        return e164
    if number.country_code == phonenumbers.country_code_for_region(region.upper()):
        return phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL)
    return phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL)


def is_known_region(region: str) -> bool:
    """True for a two-letter region code that phonenumbers has metadata for (``RU``)."""
    return region in phonenumbers.SUPPORTED_REGIONS


def _candidates(dialled: str, region: str) -> Iterator[PhoneNumber]:
    """Readings of ``dialled`` (digits, maybe a leading ``+``), most likely first."""
    digits = dialled.lstrip("+")
    texts = [dialled, "+" + digits]
    if digits.startswith("00"):
        texts.append("+" + digits[2:])
    for text in texts:
        try:
            yield phonenumbers.parse(text, region.upper())
        except phonenumbers.NumberParseException:
            continue


def _best_candidate(readings: Iterator[PhoneNumber]) -> PhoneNumber | None:
    """The first valid number, else the first of a possible (full, not local) length.

    Readings are parsed one at a time: the first is valid for most numbers.
    """
    numbers = []
    for number in readings:
        if phonenumbers.is_valid_number(number):
            return number
        numbers.append(number)
    for number in numbers:
        reason = phonenumbers.is_possible_number_with_reason(number)
        if reason == ValidationResult.IS_POSSIBLE:
            return number
    return None
