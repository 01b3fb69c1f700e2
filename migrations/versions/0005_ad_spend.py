"""ad_spend: money spent per source or campaign per day, for cost per call and per lead;
callback_tasks by first missed call, for the reports

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_TIME = sa.DateTime(timezone=True)
WHOLE_SOURCE = "campaign IS NULL"


def upgrade() -> None:
    op.create_table(
        "ad_spend",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("source", sa.String(length=255), nullable=False),
        sa.Column("campaign", sa.String(length=255), nullable=True),
        sa.Column("amount", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("imported_at", UTC_TIME, nullable=False),
        sa.CheckConstraint("amount >= 0", name=op.f("ck_ad_spend_amount")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ad_spend")),
        sa.UniqueConstraint(
            "day", "source", "campaign", name=op.f("uq_ad_spend_day_source_campaign")
        ),
    )
    op.create_index(
        op.f("uq_ad_spend_day_source_whole"),
        "ad_spend",
        ["day", "source"],
        unique=True,
        sqlite_where=sa.text(WHOLE_SOURCE),
        postgresql_where=sa.text(WHOLE_SOURCE),
    )
    # reports find the callback tasks of a period by their first missed call
    op.create_index(
        op.f("ix_callback_tasks_first_missed_at"), "callback_tasks", ["first_missed_at"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_callback_tasks_first_missed_at"), table_name="callback_tasks")
    op.drop_index(op.f("uq_ad_spend_day_source_whole"), table_name="ad_spend")
    op.drop_table("ad_spend")
