"""calls.previous_call_at: when the same caller called before, kept right by triggers

A rule-free fact per call, so the reports tell first-time callers (and count
distinct callers) in one pass over the calls instead of joining `calls` to
itself: ``previous_call_at`` is the ``started_at`` of the same caller's
previous call, calls ordered by (started_at, id); NULL for a hidden number
and for a number's first call.

Triggers keep it right however a row is written (the writer, a replayed or
spilled call stored out of order, a re-saved call, a bulk insert, a delete):
a new call gets its predecessor's start, and the call that follows it gets
the new call's start; a call deleted, or whose caller or start changes,
hands its follower to its old predecessor.  Each is two probes of
``ix_calls_caller_started_at``.  On PostgreSQL, for a statement inserting
many rows, the row-level AFTER trigger sees all of them, so any order works.

A later SQLite migration that rebuilds `calls` (batch_alter_table) drops these
triggers: it must create them again (`create_triggers`).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# the same caller's call just before (started_at, id) of row ``r``, other than ``r`` itself
_PREVIOUS = """(SELECT p.started_at FROM calls AS p
     WHERE p.caller = {r}.caller AND p.id <> {r}.id AND p.started_at <= {r}.started_at
       AND (p.started_at < {r}.started_at OR p.id < {r}.id)
     ORDER BY p.started_at DESC, p.id DESC LIMIT 1)"""
# the id of the same caller's call just after (started_at, id) of row ``r``
_NEXT = """(SELECT n.id FROM calls AS n
     WHERE n.caller = {r}.caller AND n.id <> {r}.id AND n.started_at >= {r}.started_at
       AND (n.started_at > {r}.started_at OR n.id > {r}.id)
     ORDER BY n.started_at, n.id LIMIT 1)"""
# the call that followed ``r`` now follows what precedes it (r deleted or moved)
_FIX_OLD_FOLLOWER = (
    f"UPDATE calls SET previous_call_at = {_PREVIOUS.format(r='calls')}"
    f" WHERE id = {_NEXT.format(r='OLD')}"
)
# the call that follows ``NEW`` has NEW as its previous call
_FIX_NEW_FOLLOWER = (
    "UPDATE calls SET previous_call_at = NEW.started_at"
    f" WHERE id = {_NEXT.format(r='NEW')}"
    " AND previous_call_at IS DISTINCT FROM NEW.started_at"
)
_MOVED = "OLD.caller IS DISTINCT FROM NEW.caller OR OLD.started_at IS DISTINCT FROM NEW.started_at"

BACKFILL = """
UPDATE calls SET previous_call_at = ordered.previous
FROM (
    SELECT id, lag(started_at) OVER (PARTITION BY caller ORDER BY started_at, id) AS previous
    FROM calls WHERE caller IS NOT NULL
) AS ordered
WHERE calls.id = ordered.id AND ordered.previous IS NOT NULL
"""

POSTGRESQL = [
    f"""
CREATE FUNCTION calls_previous_call_own() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.previous_call_at := CASE WHEN NEW.caller IS NOT NULL THEN {_PREVIOUS.format(r="NEW")} END;
    RETURN NEW;
END $$""",
    f"""
CREATE FUNCTION calls_previous_call_follower() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' AND OLD.caller IS NOT NULL THEN
        {_FIX_OLD_FOLLOWER};
    END IF;
    IF TG_OP <> 'DELETE' AND NEW.caller IS NOT NULL THEN
        {_FIX_NEW_FOLLOWER};
    END IF;
    RETURN NULL;
END $$""",
    """CREATE TRIGGER calls_previous_call_own_insert BEFORE INSERT ON calls
    FOR EACH ROW EXECUTE FUNCTION calls_previous_call_own()""",
    f"""CREATE TRIGGER calls_previous_call_own_update BEFORE UPDATE OF caller, started_at
    ON calls FOR EACH ROW WHEN ({_MOVED}) EXECUTE FUNCTION calls_previous_call_own()""",
    """CREATE TRIGGER calls_previous_call_insert AFTER INSERT ON calls
    FOR EACH ROW EXECUTE FUNCTION calls_previous_call_follower()""",
    f"""CREATE TRIGGER calls_previous_call_update AFTER UPDATE OF caller, started_at
    ON calls FOR EACH ROW WHEN ({_MOVED}) EXECUTE FUNCTION calls_previous_call_follower()""",
    """CREATE TRIGGER calls_previous_call_delete AFTER DELETE ON calls
    FOR EACH ROW EXECUTE FUNCTION calls_previous_call_follower()""",
]
POSTGRESQL_DROP = [
    *(
        f"DROP TRIGGER {name} ON calls"
        for name in (
            "calls_previous_call_own_insert",
            "calls_previous_call_own_update",
            "calls_previous_call_insert",
            "calls_previous_call_update",
            "calls_previous_call_delete",
        )
    ),
    "DROP FUNCTION calls_previous_call_own()",
    "DROP FUNCTION calls_previous_call_follower()",
]

# SQLite: row triggers run at once, row after row; an AFTER trigger sets the row's own value
_SQLITE_OWN = f"UPDATE calls SET previous_call_at = {_PREVIOUS.format(r='NEW')} WHERE id = NEW.id"
_SQLITE_MOVED = "OLD.caller IS NOT NEW.caller OR OLD.started_at IS NOT NEW.started_at"
SQLITE = [
    f"""CREATE TRIGGER calls_previous_call_insert AFTER INSERT ON calls
BEGIN
    {_SQLITE_OWN};
    {_FIX_NEW_FOLLOWER.replace("IS DISTINCT FROM", "IS NOT")};
END""",
    f"""CREATE TRIGGER calls_previous_call_update AFTER UPDATE OF caller, started_at ON calls
WHEN {_SQLITE_MOVED}
BEGIN
    {_FIX_OLD_FOLLOWER};
    {_SQLITE_OWN};
    {_FIX_NEW_FOLLOWER.replace("IS DISTINCT FROM", "IS NOT")};
END""",
    f"""CREATE TRIGGER calls_previous_call_delete AFTER DELETE ON calls
BEGIN
    {_FIX_OLD_FOLLOWER};
END""",
]
SQLITE_DROP = [
    f"DROP TRIGGER {name}"
    for name in (
        "calls_previous_call_insert",
        "calls_previous_call_update",
        "calls_previous_call_delete",
    )
]


def create_triggers() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for statement in SQLITE if sqlite else POSTGRESQL:
        op.execute(statement)


def upgrade() -> None:
    op.add_column("calls", sa.Column("previous_call_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(BACKFILL)
    create_triggers()


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for statement in SQLITE_DROP if sqlite else POSTGRESQL_DROP:
        op.execute(statement)
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("previous_call_at")
