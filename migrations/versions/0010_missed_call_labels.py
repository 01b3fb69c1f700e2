"""An index on the missed calls that carries what a report groups callbacks by

Callback tasks are grouped by their first missed call's source, campaign,
keyword, number or day.  Without this index every such report read all of a
year's calls to find the missed ones (15 % of them).  ``ix_calls_missed_labels``
holds the missed calls' ids with, on PostgreSQL, their start and labels
(``INCLUDE``): an index-only scan of some megabytes per million calls.  On
SQLite it is the missed calls' ids.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-24

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MISSED = "status = 'missed'"
LABELS = [
    "started_at",
    "source",
    "medium",
    "campaign",
    "first_touch_source",
    "first_touch_medium",
    "first_touch_campaign",
    "last_touch_source",
    "last_touch_medium",
    "last_touch_campaign",
    "utm_term",
    "did",
]


def upgrade() -> None:
    op.create_index(
        op.f("ix_calls_missed_labels"),
        "calls",
        ["id"],
        sqlite_where=sa.text(MISSED),
        postgresql_where=sa.text(MISSED),
        postgresql_include=LABELS,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_calls_missed_labels"), table_name="calls")
