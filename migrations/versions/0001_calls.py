"""calls, ring_attempts, outbound_calls

Revision ID: 0001
Revises:
Create Date: 2026-11-24

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "calls",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("node", sa.String(length=64), nullable=False),
        sa.Column("linkedid", sa.String(length=64), nullable=False),
        sa.Column("direction", sa.String(length=16), server_default="inbound", nullable=False),
        sa.Column("did", sa.String(length=32), nullable=True),
        sa.Column("caller", sa.String(length=32), nullable=True),
        sa.Column("caller_name", sa.String(length=255), nullable=True),
        sa.Column("source", sa.String(length=255), nullable=True),
        sa.Column("medium", sa.String(length=255), nullable=True),
        sa.Column("campaign", sa.String(length=255), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("missed_reason", sa.String(length=32), nullable=True),
        sa.Column("answered_by", sa.String(length=64), nullable=True),
        sa.Column("transferred_to", sa.String(length=64), nullable=True),
        sa.Column("queue", sa.String(length=64), nullable=True),
        sa.Column("started_at", UTC_TIME, nullable=False),
        sa.Column("answered_at", UTC_TIME, nullable=True),
        sa.Column("ended_at", UTC_TIME, nullable=False),
        sa.Column("ring_seconds", sa.Integer(), nullable=False),
        sa.Column("talk_seconds", sa.Integer(), nullable=False),
        sa.Column("recording_path", sa.Text(), nullable=True),
        sa.Column("first_time_caller", sa.Boolean(), nullable=True),
        sa.Column("is_target", sa.Boolean(), nullable=True),
        sa.Column("complete", sa.Boolean(), nullable=False),
        sa.Column("session_id", sa.String(length=64), nullable=True),
        sa.Column("variables", sa.JSON(), nullable=False),
        sa.Column("created_at", UTC_TIME, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", UTC_TIME, server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint("status IN ('answered', 'missed')", name=op.f("ck_calls_status")),
        sa.CheckConstraint("direction IN ('inbound', 'outbound')", name=op.f("ck_calls_direction")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calls")),
        sa.UniqueConstraint("node", "linkedid", name=op.f("uq_calls_node_linkedid")),
    )
    op.create_index(op.f("ix_calls_caller_started_at"), "calls", ["caller", "started_at"])
    op.create_index(op.f("ix_calls_did_started_at"), "calls", ["did", "started_at"])
    op.create_index(op.f("ix_calls_started_at"), "calls", ["started_at"])

    op.create_table(
        "ring_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.Integer(), nullable=False),
        sa.Column("manager", sa.String(length=64), nullable=True),
        sa.Column("channel", sa.String(length=255), nullable=False),
        sa.Column("rang_at", UTC_TIME, nullable=False),
        sa.Column("ended_at", UTC_TIME, nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=True),
        sa.Column("queue", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["call_id"],
            ["calls.id"],
            name=op.f("fk_ring_attempts_call_id_calls"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ring_attempts")),
    )
    op.create_index(op.f("ix_ring_attempts_call_id"), "ring_attempts", ["call_id"])
    op.create_index(
        op.f("ix_ring_attempts_manager_rang_at"), "ring_attempts", ["manager", "rang_at"]
    )

    op.create_table(
        "outbound_calls",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("node", sa.String(length=64), nullable=False),
        sa.Column("linkedid", sa.String(length=64), nullable=False),
        sa.Column("manager", sa.String(length=64), nullable=True),
        sa.Column("customer", sa.String(length=32), nullable=True),
        sa.Column("did", sa.String(length=32), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("missed_reason", sa.String(length=32), nullable=True),
        sa.Column("started_at", UTC_TIME, nullable=False),
        sa.Column("answered_at", UTC_TIME, nullable=True),
        sa.Column("ended_at", UTC_TIME, nullable=False),
        sa.Column("ring_seconds", sa.Integer(), nullable=False),
        sa.Column("talk_seconds", sa.Integer(), nullable=False),
        sa.Column("recording_path", sa.Text(), nullable=True),
        sa.Column("variables", sa.JSON(), nullable=False),
        sa.Column("created_at", UTC_TIME, server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint(
            "status IN ('answered', 'missed')", name=op.f("ck_outbound_calls_status")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbound_calls")),
        sa.UniqueConstraint("node", "linkedid", name=op.f("uq_outbound_calls_node_linkedid")),
    )
    op.create_index(
        op.f("ix_outbound_calls_customer_started_at"), "outbound_calls", ["customer", "started_at"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_outbound_calls_customer_started_at"), table_name="outbound_calls")
    op.drop_table("outbound_calls")
    op.drop_index(op.f("ix_ring_attempts_manager_rang_at"), table_name="ring_attempts")
    op.drop_index(op.f("ix_ring_attempts_call_id"), table_name="ring_attempts")
    op.drop_table("ring_attempts")
    op.drop_index(op.f("ix_calls_started_at"), table_name="calls")
    op.drop_index(op.f("ix_calls_did_started_at"), table_name="calls")
    op.drop_index(op.f("ix_calls_caller_started_at"), table_name="calls")
    op.drop_table("calls")
