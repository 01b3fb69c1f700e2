"""Room services built from `Settings` as the daemon builds them, for tests that run one alone."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from pbx_tracker.callbacks.service import CallbackService
from pbx_tracker.config import Settings


def callback_service(settings: Settings, engine: AsyncEngine, **options: Any) -> CallbackService:
    """A callback service built from ``settings`` as the daemon builds it (``options``:
    ``clock``, ``board``, ``ringme``)."""
    return CallbackService(
        settings.callbacks,
        settings.directory,
        engine,
        database_url=settings.database.url,
        timezone=settings.routing.timezone,
        **options,
    )
