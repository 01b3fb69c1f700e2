"""calls: the website visit a call is credited to, its UTM tags, and why

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LABEL = sa.String(length=256)
UTM_COLUMNS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
# the first and the last touch's channel, so reports can apply either model
TOUCH_COLUMNS = tuple(
    f"{touch}_touch_{label}" for touch in ("first", "last") for label in ("source", "medium", "campaign")
)


def upgrade() -> None:
    for name in UTM_COLUMNS:
        op.add_column("calls", sa.Column(name, LABEL, nullable=True))
    op.add_column("calls", sa.Column("attribution_method", sa.String(length=16), nullable=True))
    op.add_column("calls", sa.Column("attribution_confidence", sa.Float(), nullable=True))
    op.add_column("calls", sa.Column("attribution", sa.JSON(), nullable=True))
    for name in TOUCH_COLUMNS:
        op.add_column("calls", sa.Column(name, sa.String(length=255), nullable=True))
    op.create_index(op.f("ix_calls_session_id"), "calls", ["session_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_calls_session_id"), table_name="calls")
    with op.batch_alter_table("calls") as batch:
        for name in reversed(TOUCH_COLUMNS):
            batch.drop_column(name)
        for name in ("attribution", "attribution_confidence", "attribution_method"):
            batch.drop_column(name)
        for name in reversed(UTM_COLUMNS):
            batch.drop_column(name)
