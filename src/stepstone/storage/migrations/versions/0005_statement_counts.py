"""instance counts on PostgreSQL: inserts and deletes counted once a statement

Migration 0003's row trigger added to a counter row once for every row inserted or deleted. On
PostgreSQL every such update of the same row in one transaction makes a new version of it that
the next update must walk past, so a statement of n rows cost O(n²): 20,000 rows took 2.6 s,
and the bench's COPY of 1,000,000 stored instances never finished. Statement triggers with
transition tables add each (workflow, status) group's count once: 20,000 rows in 35 ms.

Status changes keep the row trigger: a trigger with transition tables cannot name the columns
it fires on, and one on every update (leases are renewed by updates) would cost every write.
SQLite is unchanged: it has no statement triggers, and no row versions to walk past.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

SLOTS = 64
"""As in 0003: each connection adds to its own slot, so concurrent writers never wait."""


def _function(name: str, table: str, sign: str) -> str:
    return f"""
CREATE FUNCTION {name}() RETURNS trigger AS $$
BEGIN
    INSERT INTO instance_counts (workflow_id, status, slot, n)
    SELECT workflow_id, status, pg_backend_pid() % {SLOTS}, {sign}count(*)
    FROM {table} GROUP BY workflow_id, status
    ON CONFLICT (workflow_id, status, slot) DO UPDATE SET n = instance_counts.n + EXCLUDED.n;
    RETURN NULL;
END
$$ LANGUAGE plpgsql
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    op.execute("DROP TRIGGER instances_count_insert ON instances")
    op.execute(_function("stepstone_count_inserted", "added", ""))
    op.execute(_function("stepstone_count_deleted", "removed", "-"))
    op.execute(
        "CREATE TRIGGER instances_count_insert AFTER INSERT ON instances "
        "REFERENCING NEW TABLE AS added "
        "FOR EACH STATEMENT EXECUTE FUNCTION stepstone_count_inserted()"
    )
    op.execute(
        "CREATE TRIGGER instances_count_delete AFTER DELETE ON instances "
        "REFERENCING OLD TABLE AS removed "
        "FOR EACH STATEMENT EXECUTE FUNCTION stepstone_count_deleted()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    op.execute("DROP TRIGGER instances_count_insert ON instances")
    op.execute("DROP TRIGGER instances_count_delete ON instances")
    op.execute("DROP FUNCTION stepstone_count_inserted()")
    op.execute("DROP FUNCTION stepstone_count_deleted()")
    op.execute(
        "CREATE TRIGGER instances_count_insert AFTER INSERT OR DELETE ON instances "
        "FOR EACH ROW EXECUTE FUNCTION stepstone_count_instances()"
    )
