"""How a call was answered, and how long the caller waited for a transfer

- ``calls.answered_via``: ``device`` (one of a manager's phones) or ``number``
  (an external number through a trunk, e.g. a manager's mobile reached by
  follow-me or call forwarding), NULL when nobody answered;
- ``calls.answered_number``: for ``number`` the external number (E.164); for a
  device nobody declared as a manager's, the device (``PJSIP/104``);
- ``calls.transfer_wait_seconds``: seconds after the first answer when the
  caller was connected to nobody before being connected again (not part of
  ``talk_seconds``); 0 for the calls stored before, whose talk still holds it;
- ``ring_attempts.via`` / ``ring_attempts.number``: the same for each leg.

Nothing is filled for the stored rows: the captures they came from are gone.
Plain ``add_column``: on SQLite a batch rebuild of `calls` would drop the
previous_call_at triggers of 0006.  SQLite (3.35+) drops the columns again
with plain ``ALTER TABLE … DROP COLUMN``.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

VIA = sa.String(length=16)
NUMBER = sa.String(length=64)


def upgrade() -> None:
    op.add_column("calls", sa.Column("answered_via", VIA, nullable=True))
    op.add_column("calls", sa.Column("answered_number", NUMBER, nullable=True))
    op.add_column(
        "calls",
        sa.Column("transfer_wait_seconds", sa.Integer(), server_default="0", nullable=False),
    )
    op.add_column("ring_attempts", sa.Column("via", VIA, nullable=True))
    op.add_column("ring_attempts", sa.Column("number", NUMBER, nullable=True))


def downgrade() -> None:
    for column in ("number", "via"):
        op.drop_column("ring_attempts", column)
    for column in ("transfer_wait_seconds", "answered_number", "answered_via"):
        op.drop_column("calls", column)
