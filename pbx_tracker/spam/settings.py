"""Settings of spam hygiene (``spam:`` in the config).

``block`` holds caller numbers in any form the ``phone_region`` reads (stored
in E.164) and prefixes in international form ending in ``*`` (``+7800*``).
``block_hidden`` makes calls without a caller number spam.  ``repeat_limit``
(off by default) marks the calls of one number past that many within
``repeat_window_minutes``: a robocall or dialer flood.  It is off because a
real customer who redials is a hot lead.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field, ValidationInfo

from pbx_tracker.config_fields import ConfigModel, context_region, problem
from pbx_tracker.phones import is_dialable, normalize_number

__all__ = ["SpamSettings", "block_entry"]

_PREFIX = re.compile(r"\+[1-9]\d{0,14}\*")
_FORMATTING = re.compile(r"[\s\-().]")


def block_entry(text: str, region: str) -> str:
    """``text`` as a stored block entry: E.164, or ``+digits*``; ValueError otherwise."""
    compact = _FORMATTING.sub("", text)
    if compact.endswith("*"):
        if not _PREFIX.fullmatch(compact):
            raise ValueError(
                f"{text!r}: a prefix is + and the country code and digits, then * (e.g. +7800*)"
            )
        return compact
    number = normalize_number(text, region)
    if not is_dialable(number):
        raise ValueError(f"{text!r} is not a phone number (or a prefix such as +7800*)")
    assert number is not None  # is_dialable(None) is False
    return number


def _check_entry(value: str, info: ValidationInfo) -> str:
    try:
        return block_entry(value, context_region(info))
    except ValueError as error:
        raise problem("block_entry", str(error)) from None


BlockEntry = Annotated[str, AfterValidator(_check_entry)]


class SpamSettings(ConfigModel):
    """Which inbound calls are spam: kept, but left out of leads and callbacks."""

    block: list[BlockEntry] = Field(default_factory=list)
    block_hidden: bool = False
    repeat_limit: int | None = Field(default=None, ge=1)
    repeat_window_minutes: float = Field(default=10, gt=0, le=7 * 24 * 60)
