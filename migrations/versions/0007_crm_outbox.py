"""crm_outbox: call events for the CRM webhook, written with the calls

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_TIME = sa.DateTime(timezone=True)
PENDING = "delivered_at IS NULL AND failed_at IS NULL"


def upgrade() -> None:
    op.create_table(
        "crm_outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("call_key", sa.String(length=160), nullable=False),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("next_attempt_at", UTC_TIME, nullable=False),
        sa.Column("claimed_until", UTC_TIME, nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("delivered_at", UTC_TIME, nullable=True),
        sa.Column("failed_at", UTC_TIME, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_outbox")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_crm_outbox_idempotency_key")),
    )
    op.create_index(op.f("ix_crm_outbox_call_key_id"), "crm_outbox", ["call_key", "id"])
    op.create_index(
        op.f("ix_crm_outbox_pending_next_attempt_at"),
        "crm_outbox",
        ["next_attempt_at"],
        sqlite_where=sa.text(PENDING),
        postgresql_where=sa.text(PENDING),
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_crm_outbox_pending_next_attempt_at"), table_name="crm_outbox")
    op.drop_index(op.f("ix_crm_outbox_call_key_id"), table_name="crm_outbox")
    op.drop_table("crm_outbox")
