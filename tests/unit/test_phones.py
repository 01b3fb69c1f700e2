"""Phone numbers as Asterisk delivers them -> E.164, and back for people."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pbx_tracker.phones import display_number, is_dialable, is_known_region, normalize_number


@pytest.mark.parametrize(
    "raw",
    [
        "79161234501",
        "89161234501",
        "+79161234501",
        "9161234501",
        "+7 (916) 123-45-01",
        "8 (916) 123-45-01",
        "8-916-123-45-01",
        " 8 916 123 45 01 ",
        "+7.916.123.45.01",
    ],
)
def test_russian_caller_in_every_asterisk_form_becomes_e164(raw: str) -> None:
    """A Russian mobile caller is stored as +79161234501 whether Asterisk sends it with 7, 8, +7,
    ten digits, brackets, dashes or spaces."""
    assert normalize_number(raw, "RU") == "+79161234501"


@pytest.mark.parametrize("raw", ["74951110001", "84951110001", "+7 495 111-00-01"])
def test_moscow_did_becomes_e164(raw: str) -> None:
    """A Moscow tracked number is stored as +74951110001 whether Asterisk sends it with 7, 8 or
    formatted."""
    assert normalize_number(raw, "RU") == "+74951110001"


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "",
        "   ",
        "<unknown>",
        "anonymous",
        "Anonymous",
        "UNKNOWN",
        "restricted",
        "Unavailable",
    ],
)
def test_hidden_caller_is_none(raw: str | None) -> None:
    """A hidden caller (empty, <unknown>, anonymous, restricted and the like) is stored as no number
    rather than as a fake one."""
    assert normalize_number(raw, "RU") is None


@pytest.mark.parametrize(
    ("raw", "kept"),
    [
        ("101", "101"),
        (" 101 ", "101"),
        ("1234567", "1234567"),  # a local number without area code is no E.164 number
        ("abc", "abc"),
        ("1-800-FLOWERS", "1-800-FLOWERS"),
        ("IAX2/101", "IAX2/101"),
    ],
)
def test_what_is_not_a_phone_number_is_kept_as_asterisk_said_it(raw: str, kept: str) -> None:
    """An extension, a short local number or text that is no phone number is kept as Asterisk sent
    it (trimmed), not mangled into a wrong number."""
    assert normalize_number(raw, "RU") == kept


@pytest.mark.parametrize(
    ("raw", "region", "e164"),
    [
        ("+44 20 7946 0958", "RU", "+442079460958"),
        ("00442079460958", "RU", "+442079460958"),
        ("442079460958", "RU", "+442079460958"),
        ("8 10 44 20 7946 0958", "RU", "+442079460958"),
        ("030 12345678", "DE", "+493012345678"),
        ("+79161234501", "DE", "+79161234501"),
    ],
)
def test_foreign_numbers_and_other_regions(raw: str, region: str, e164: str) -> None:
    """Foreign numbers in international forms (+44, 00, 8 10) and numbers of other configured
    regions become the right E.164 number."""
    assert normalize_number(raw, region) == e164


@given(st.integers(min_value=9_000_000_000, max_value=9_999_999_999))
def test_every_written_form_of_a_mobile_gives_the_same_number(national: int) -> None:
    """Every written form of any Russian mobile gives one dialable E.164 number that stays the same
    when normalised again."""
    digits = str(national)
    forms = [f"7{digits}", f"8{digits}", f"+7{digits}", f"+7 ({digits[:3]}) {digits[3:]}"]
    results = {normalize_number(form, "RU") for form in forms}
    assert len(results) == 1
    (result,) = results
    assert result is not None
    assert is_dialable(result)
    assert normalize_number(result, "RU") == result


@pytest.mark.parametrize(
    ("number", "dialable"),
    [
        ("+79161234501", True),
        ("+442079460958", True),
        ("79161234501", False),
        ("101", False),
        ("+0123456", False),
        ("+7 916 123 45 01", False),
        ("", False),
        (None, False),
    ],
)
def test_is_dialable_only_for_e164(number: str | None, dialable: bool) -> None:
    """Only a plain E.164 number counts as dialable for a callback; national forms, extensions,
    spaced or empty numbers do not."""
    assert is_dialable(number) is dialable


@pytest.mark.parametrize(
    ("number", "region", "shown"),
    [
        ("+79161234501", "RU", "8 (916) 123-45-01"),
        ("+79161234501", "ru", "8 (916) 123-45-01"),
        ("+442079460958", "RU", "+44 20 7946 0958"),
        ("+79161234501", "GB", "+7 916 123-45-01"),
        ("101", "RU", "101"),
        ("", "RU", ""),
        (None, "RU", ""),
    ],
)
def test_display_number(number: str | None, region: str, shown: str) -> None:
    """People see numbers of their own region the local way (8 (916) 123-45-01) and foreign ones in
    international form, with extensions as they are and nothing for no number."""
    assert display_number(number, region) == shown


def test_known_regions() -> None:
    """Only real two-letter region codes such as RU and DE are accepted as the phone region."""
    assert is_known_region("RU")
    assert is_known_region("DE")
    assert not is_known_region("XX")
    assert not is_known_region("Russia")
