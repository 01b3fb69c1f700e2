"""web_users: people who sign in to the pages, added with `pbx-tracker web user add`

Besides the users listed in the config (``web.users``): name, role (manager,
marketer, admin), a manager's extension, and the scrypt password hash.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-24

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "web_users",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("extension", sa.String(length=16), nullable=True),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("updated_at", UTC_TIME, nullable=False),
        sa.CheckConstraint(
            "role IN ('manager', 'marketer', 'admin')", name=op.f("ck_web_users_role")
        ),
        sa.CheckConstraint(
            "role <> 'manager' OR extension IS NOT NULL",
            name=op.f("ck_web_users_manager_extension"),
        ),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_web_users")),
    )


def downgrade() -> None:
    op.drop_table("web_users")
