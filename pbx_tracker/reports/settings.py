"""Settings of the reports (``reports:`` in the config) and the rules a report applies.

Every rule is applied when a report is computed, from the stored facts of
each call, so changing one re-computes past periods too:

- ``target_seconds``: a target call was answered and talked at least this
  long (default: ``calls.target_seconds``);
- ``unique_days``: the uniqueness window: a unique caller's call came with no
  call from the same number in the ``unique_days`` * 24 hours before
  (default 30; null: never before, as a first-time caller -- a lead -- always is);
- ``model``: which touch credits a call on a pool number, ``last_touch`` or
  ``first_touch`` (default: ``attribution.model``);
- ``currency``: the currency of ad spend lines that name none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from pydantic import BeforeValidator, Field

from pbx_tracker.config_fields import ConfigModel, lower_text

__all__ = ["AttributionModel", "ReportRules", "ReportSettings"]

AttributionModel = Literal["last_touch", "first_touch"]


class ReportSettings(ConfigModel):
    """Rules of the reports; None means "as the rest of the config says"."""

    target_seconds: int | None = Field(default=None, ge=0)
    unique_days: int | None = Field(default=30, ge=1, le=3650)
    model: Annotated[AttributionModel | None, BeforeValidator(lower_text)] = None
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "RUB"


@dataclass(frozen=True, slots=True)
class ReportRules:
    """The rules one report is computed with.  ``zone`` None: the machine's local zone."""

    target_seconds: int
    unique_days: int | None
    model: AttributionModel
    sla_minutes: float
    zone: ZoneInfo | None
