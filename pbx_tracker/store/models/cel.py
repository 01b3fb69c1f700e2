"""Where the reading of each node's CEL log goes on after a restart."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from pbx_tracker.store.models.base import Base


class CelPositionRow(Base):
    """Where the next read of a node's CEL log starts (migration 0014): the file's
    identity (device:inode) and first-line fingerprint and the byte offset, or for
    cel_pgsql's table (``source`` ``table:<name>``) the id to start from."""

    __tablename__ = "cel_positions"

    node: Mapped[str] = mapped_column(String(64), primary_key=True)
    source: Mapped[str] = mapped_column(String(512), primary_key=True)
    identity: Mapped[str | None] = mapped_column(String(64))
    fingerprint: Mapped[str | None] = mapped_column(String(32))
    byte_offset: Mapped[int] = mapped_column(BigInteger, server_default="0")
    updated_at: Mapped[datetime]
