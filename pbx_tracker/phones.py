"""Phone numbers as Asterisk delivers them, turned into E.164.

Asterisk hands over caller IDs and DIDs in whatever form the carrier used:
``79161234501``, ``89161234501`` (Russian trunk prefix 8), ``+7 (916)
123-45-01``, ``<unknown>``, or an internal extension such as ``101``.  Everything
that is a phone number becomes ``+79161234501``; hidden callers become ``None``;
anything else is kept as Asterisk said it, so a record still shows it.

Numbers the config names (tracked DIDs, pool numbers, managers' external
numbers) and the numbers looked up against them follow one rule,
`canonical_number`: a short internal number (1 to 6 digits: a ring group's or
queue's number) stays its digits, a phone number in any form becomes E.164.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import phonenumbers
from phonenumbers import PhoneNumber, PhoneNumberFormat, ValidationResult

__all__ = [
    "canonical_number",
    "display_number",
    "is_dialable",
    "is_known_region",
    "is_short_number",
    "normalize_number",
    "read_phone_number",
]

_HIDDEN = frozenset({"", "<unknown>", "unknown", "anonymous", "restricted", "unavailable"})
_FORMATTING = re.compile(r"[\s\-().]")
_DIALLED = re.compile(r"\+?\d+")
_E164 = re.compile(r"\+[1-9]\d{1,14}")
_SHORT = re.compile(r"\d{1,6}")


def normalize_number(raw: str | None, region: str) -> str | None:
    """Return ``raw`` in E.164, ``None`` for a hidden caller, else ``raw`` stripped."""
    if raw is None:
        return None
    text = raw.strip()
    if text.lower() in _HIDDEN:
        return None
    return read_phone_number(text, region) or text


def canonical_number(raw: str | None, region: str) -> str | None:
    """The one form of a number in the config and in every lookup; None when unreadable.

    A short internal number (1 to 6 digits as written: ``401``, ``600``) stays
    its digits; a phone number in any form (``+74951110002``, ``84951110002``,
    ``4951110002``) becomes E.164, national forms read with ``region``.
    """
    if raw is None:
        return None
    text = raw.strip()
    if is_short_number(text):
        return text
    return read_phone_number(text, region)


def is_short_number(text: str) -> bool:
    """True for an internal number: 1 to 6 digits (an extension, a ring group, a queue)."""
    return _SHORT.fullmatch(text) is not None


def read_phone_number(raw: str, region: str) -> str | None:
    """``raw`` in E.164 when it reads as a phone number, else None.

    ``region`` (``"RU"``) decides how numbers without a country code are read.
    Candidates are tried in order — as dialled in ``region``, as digits with a
    ``+`` in front, without a leading ``00`` — and the first valid one wins,
    else the first one of a possible length.  Answers are cached (parsing costs
    tens of microseconds, and the same callers and DIDs come back all day).
    """
    key = (raw, region)
    if key not in _CACHE:
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.clear()
        number = _CACHE[key] = _read(raw, region)
        if number is not None:
            _CACHE[(number, region)] = number  # E.164 reads back as itself
    return _CACHE[key]


_CACHE: dict[tuple[str, str], str | None] = {}
_CACHE_SIZE = 65536


def _read(raw: str, region: str) -> str | None:
    dialled = _FORMATTING.sub("", raw.strip())
    if not _DIALLED.fullmatch(dialled):
        return None
    number = _best_candidate(_candidates(dialled, region))
    if number is None:
        return None
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
