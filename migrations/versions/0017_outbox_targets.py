"""crm_outbox: a target per event (webhook, bitrix24, amocrm, telegram); crm_links: what
each platform keeps of a call between its events (e.g. Bitrix24's CALL_ID)

Every stored event was for the CRM webhook: they get the target ``webhook``.
Events of one call are ordered per target, so the index on (call_key, id)
becomes one on (target, call_key, id).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | Sequence[str] | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("crm_outbox") as table:
        table.add_column(
            sa.Column("target", sa.String(length=32), server_default="webhook", nullable=False)
        )
        table.drop_index(op.f("ix_crm_outbox_call_key_id"))
        table.create_index(op.f("ix_crm_outbox_target_call_key_id"), ["target", "call_key", "id"])
    op.create_table(
        "crm_links",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("target", sa.String(length=32), nullable=False),
        sa.Column("call_key", sa.String(length=160), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("updated_at", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_links")),
        sa.UniqueConstraint("target", "call_key", name=op.f("uq_crm_links_target_call_key")),
    )


def downgrade() -> None:
    op.drop_table("crm_links")
    op.execute("DELETE FROM crm_outbox WHERE target <> 'webhook'")
    with op.batch_alter_table("crm_outbox") as table:
        table.drop_index(op.f("ix_crm_outbox_target_call_key_id"))
        table.create_index(op.f("ix_crm_outbox_call_key_id"), ["call_key", "id"])
        table.drop_column("target")
