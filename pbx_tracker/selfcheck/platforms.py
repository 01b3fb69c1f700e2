"""The outside platforms held against the config by ``check-config --live``: the CRMs
(`pbx_tracker.crm.checks`) and the Telegram bot (`pbx_tracker.telegram.check`).

Only the platforms the config switches on are asked, all at once, each bounded by
its own ``timeout``; the findings come back in a fixed order (Bitrix24, amoCRM,
Telegram) whatever answered first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from pbx_tracker.crm.checks import PlatformFindings, check_amocrm, check_bitrix24
from pbx_tracker.telegram.check import check_bot

if TYPE_CHECKING:
    from pbx_tracker.config import Settings

__all__ = ["check_platforms"]


async def check_platforms(settings: Settings) -> PlatformFindings:
    """Problems, notes and an OK line for each configured platform (none configured:
    nothing at all)."""
    managers = settings.managers
    checks: list[Coroutine[Any, Any, PlatformFindings]] = []
    if settings.crm.bitrix24 is not None:
        checks.append(check_bitrix24(settings.crm.bitrix24, managers))
    if settings.crm.amocrm is not None:
        checks.append(check_amocrm(settings.crm.amocrm, managers))
    if settings.callbacks.telegram is not None:
        checks.append(check_bot(settings.callbacks.telegram, managers))
    found = PlatformFindings()
    for each in await asyncio.gather(*checks):
        found.extend(each)
    return found
