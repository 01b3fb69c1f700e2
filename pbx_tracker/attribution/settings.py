"""Settings of dynamic tracking: the number pools (``number_pools:``) and how calls on
them are attributed (``attribution:``).

A pool's numbers are shown to website visitors, one per visit.  ``hold_minutes``:
how long a visit keeps its number after the page's last keep-alive (the visitor
may call after closing the tab).  ``quarantine_minutes``: how long a released
number rests before another visit is shown it; a call in that time can only be
the last holder's.  ``grace_minutes``: how long after a release a call is still
credited to the last holder.  Keep ``quarantine_minutes`` at least
``grace_minutes``, or a call in the grace may have two candidates (it is then
marked ambiguous, not guessed).

``max_visits_per_client`` and ``max_visits_per_network`` cap the live visits of
one address and of one network (an IPv4 /24, an IPv6 /48; default a quarter of
the pool, at least ``max_visits_per_client``): a visit beyond is refused and
the page keeps the site's own number.  ``static_number_for_bots``: crawlers,
headless browsers and scripts (by User-Agent, or the page's
``navigator.webdriver``) are answered with the fallback, never a pool number.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field

from pbx_tracker.config_fields import (
    ConfigModel,
    Did,
    NonEmptyStr,
    PoolEntry,
    expand_pool,
    lower_text,
    try_expand_pool_entry,
)

__all__ = ["AttributionSettings", "NumberPool", "pool_problems"]

_POOL_NAME = r"^[A-Za-z0-9_.-]{1,64}$"


class NumberPool(ConfigModel):
    """DIDs handed out to website visitors; `numbers` holds every DID in E.164."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(pattern=_POOL_NAME)]
    numbers: Annotated[list[PoolEntry], Field(min_length=1), AfterValidator(expand_pool)]
    source: NonEmptyStr = "pool"
    medium: str | None = None
    campaign: str | None = None
    fallback: Did | None = None
    hold_minutes: float = Field(default=20.0, gt=0, le=24 * 60)
    quarantine_minutes: float = Field(default=5.0, ge=0, le=24 * 60)
    grace_minutes: float = Field(default=5.0, ge=0, le=24 * 60)
    max_visits_per_client: int = Field(default=5, ge=1, le=1000)
    max_visits_per_network: int | None = Field(default=None, ge=1, le=100_000)
    static_number_for_bots: bool = True

    @property
    def hold(self) -> timedelta:
        return timedelta(minutes=self.hold_minutes)

    @property
    def grace(self) -> timedelta:
        return timedelta(minutes=self.grace_minutes)


class AttributionSettings(ConfigModel):
    """How a call on a pool number gets its source, and when to warn."""

    model_config = ConfigDict(extra="forbid")

    model: Annotated[Literal["last_touch", "first_touch"], BeforeValidator(lower_text)] = (
        "last_touch"
    )
    first_touch_days: int = Field(default=90, ge=1, le=3650)
    warn_unattributed_share: float = Field(default=0.2, gt=0, le=1)
    warn_min_calls: int = Field(default=20, ge=1)
    store_client_ip: bool = False
    store_analytics_ids: bool = True


def pool_problems(raw: Mapping[str, Any], region: str) -> list[str]:
    """``number_pools[1].fallback: +74951110012 is a number of pool site``: a fallback
    must be a number every visitor may be shown, never one the pool hands out."""
    pools = [p for p in raw.get("number_pools") or [] if isinstance(p, dict)]
    owners: dict[str, str] = {}
    for pool in pools:
        entries = pool.get("numbers")
        for entry in entries if isinstance(entries, list) else []:
            for _, e164 in try_expand_pool_entry(entry, region):
                owners.setdefault(e164, str(pool.get("name")))
    problems = []
    for index, pool in enumerate(pools):
        for written, e164 in try_expand_pool_entry(pool.get("fallback"), region):
            if e164 in owners:
                problems.append(
                    f"number_pools[{index}].fallback: {written} is a number of pool "
                    f"{owners[e164]}; the fallback must be one no visit is given"
                )
    return problems
