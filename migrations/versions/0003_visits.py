"""visits, number_leases, pool_stats (dynamic number insertion)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_TIME = sa.DateTime(timezone=True)
LIVE_LEASE = "released_at IS NULL"
LABEL = sa.String(length=256)
URL = sa.String(length=2048)


def upgrade() -> None:
    op.create_table(
        "visits",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("pool", sa.String(length=64), nullable=False),
        sa.Column("started_at", UTC_TIME, nullable=False),
        sa.Column("last_seen_at", UTC_TIME, nullable=False),
        sa.Column("landing_page", URL, nullable=True),
        sa.Column("referrer", URL, nullable=True),
        sa.Column("utm_source", LABEL, nullable=True),
        sa.Column("utm_medium", LABEL, nullable=True),
        sa.Column("utm_campaign", LABEL, nullable=True),
        sa.Column("utm_term", LABEL, nullable=True),
        sa.Column("utm_content", LABEL, nullable=True),
        sa.Column("gclid", LABEL, nullable=True),
        sa.Column("yclid", LABEL, nullable=True),
        sa.Column("fbclid", LABEL, nullable=True),
        sa.Column("ga_client_id", LABEL, nullable=True),
        sa.Column("ym_client_id", LABEL, nullable=True),
        sa.Column("visitor_id", sa.String(length=64), nullable=True),
        sa.Column("client_ip", sa.String(length=64), nullable=True),
        sa.Column("user_agent", sa.String(length=512), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_visits")),
    )
    op.create_index(
        op.f("ix_visits_visitor_id_started_at"), "visits", ["visitor_id", "started_at"]
    )
    op.create_index(op.f("ix_visits_pool_started_at"), "visits", ["pool", "started_at"])

    op.create_table(
        "number_leases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("pool", sa.String(length=64), nullable=False),
        sa.Column("did", sa.String(length=32), nullable=False),
        sa.Column("visit_id", sa.String(length=64), nullable=False),
        sa.Column("started_at", UTC_TIME, nullable=False),
        sa.Column("last_seen_at", UTC_TIME, nullable=False),
        sa.Column("released_at", UTC_TIME, nullable=True),
        sa.ForeignKeyConstraint(
            ["visit_id"],
            ["visits.id"],
            name=op.f("fk_number_leases_visit_id_visits"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_number_leases")),
    )
    op.create_index(
        op.f("ix_number_leases_did_started_at"), "number_leases", ["did", "started_at"]
    )
    op.create_index(
        op.f("ix_number_leases_did_released_at"), "number_leases", ["did", "released_at"]
    )
    op.create_index(op.f("ix_number_leases_visit_id"), "number_leases", ["visit_id"])
    op.create_index(
        op.f("uq_number_leases_live_did"),
        "number_leases",
        ["did"],
        unique=True,
        sqlite_where=sa.text(LIVE_LEASE),
        postgresql_where=sa.text(LIVE_LEASE),
    )
    op.create_index(
        op.f("ix_number_leases_live_pool"),
        "number_leases",
        ["pool"],
        sqlite_where=sa.text(LIVE_LEASE),
        postgresql_where=sa.text(LIVE_LEASE),
    )

    op.create_table(
        "pool_stats",
        sa.Column("pool", sa.String(length=64), nullable=False),
        sa.Column("hour", UTC_TIME, nullable=False),
        sa.Column("leases_started", sa.Integer(), server_default="0", nullable=False),
        sa.Column("exhaustions", sa.Integer(), server_default="0", nullable=False),
        sa.Column("peak_in_use", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("pool", "hour", name=op.f("pk_pool_stats")),
    )


def downgrade() -> None:
    op.drop_table("pool_stats")
    op.drop_index(op.f("ix_number_leases_live_pool"), table_name="number_leases")
    op.drop_index(op.f("uq_number_leases_live_did"), table_name="number_leases")
    op.drop_index(op.f("ix_number_leases_visit_id"), table_name="number_leases")
    op.drop_index(op.f("ix_number_leases_did_released_at"), table_name="number_leases")
    op.drop_index(op.f("ix_number_leases_did_started_at"), table_name="number_leases")
    op.drop_table("number_leases")
    op.drop_index(op.f("ix_visits_pool_started_at"), table_name="visits")
    op.drop_index(op.f("ix_visits_visitor_id_started_at"), table_name="visits")
    op.drop_table("visits")
