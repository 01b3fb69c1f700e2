"""The visits API's own answers: its errors and the pools' status.

What a page sends and the pool answers (`VisitStart`, `VisitAnswer`,
`KeepAliveAnswer`) is the pool's: `pbx_tracker.attribution.visit_pool`.  The
same pydantic models validate every request and describe the API in its
OpenAPI document (`pbx_tracker.web.openapi`).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from pbx_tracker.attribution.status import PoolStatus

__all__ = ["ErrorAnswer", "ErrorDetail", "PoolStatusAnswer"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PoolStatusAnswer(_Model):
    """Every configured pool's figures (`pbx_tracker.attribution.status`)."""

    pools: list[PoolStatus]


class ErrorDetail(_Model):
    """One problem: where (``loc``, e.g. ``["utm_source"]``), what, and its kind."""

    loc: list[str | int]
    msg: str
    type: str


class ErrorAnswer(_Model):
    error: str
    detail: list[ErrorDetail] = Field(default_factory=list)
