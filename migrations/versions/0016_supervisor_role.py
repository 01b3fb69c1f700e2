"""web_users: the role supervisor (the live board, everyone's callbacks, calls, reports)

Only the check on ``role`` changes; no row changes.  Downgrading refuses while a
stored user is a supervisor (remove them or give them another role first).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD = "role IN ('manager', 'marketer', 'admin')"
NEW = "role IN ('manager', 'supervisor', 'marketer', 'admin')"


def _role_check(condition: str) -> None:
    with op.batch_alter_table("web_users") as table:
        table.drop_constraint(op.f("ck_web_users_role"), type_="check")
        table.create_check_constraint(op.f("ck_web_users_role"), condition)


def upgrade() -> None:
    _role_check(NEW)


def downgrade() -> None:
    supervisors = op.get_bind().execute(
        sa.text("SELECT count(*) FROM web_users WHERE role = 'supervisor'")
    )
    if supervisors.scalar_one():
        raise RuntimeError(
            "web_users holds supervisors: remove them or change their role "
            "(pbx-tracker web user ...) before downgrading"
        )
    _role_check(OLD)
