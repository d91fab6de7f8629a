"""instance counts per workflow and status, kept by triggers

Lists answer with the total count of what they match, and workflow lists with instances per
status; counting a million instances reads a million index entries (about 57 ms on SQLite).
The counts are kept instead, by triggers on ``instances``, in the transaction of every change,
so they are exact. A count is the sum of a few rows: on PostgreSQL each connection adds to its
own slot (``pg_backend_pid() % 64``), so concurrent writers never wait on one counter row;
SQLite has a single writer and uses slot 0.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

SLOTS = 64

_SQLITE_ADD = """
    INSERT INTO instance_counts (workflow_id, status, slot, n)
    VALUES ({row}.workflow_id, {row}.status, 0, {delta})
    ON CONFLICT (workflow_id, status, slot) DO UPDATE SET n = n + {delta};
"""

_PG_FUNCTION = f"""
CREATE FUNCTION stepstone_count_instances() RETURNS trigger AS $$
DECLARE
    my_slot integer := pg_backend_pid() % {SLOTS};
BEGIN
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO instance_counts (workflow_id, status, slot, n)
        VALUES (NEW.workflow_id, NEW.status, my_slot, 1)
        ON CONFLICT (workflow_id, status, slot) DO UPDATE SET n = instance_counts.n + 1;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        INSERT INTO instance_counts (workflow_id, status, slot, n)
        VALUES (OLD.workflow_id, OLD.status, my_slot, -1)
        ON CONFLICT (workflow_id, status, slot) DO UPDATE SET n = instance_counts.n - 1;
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql
"""


def upgrade() -> None:
    op.create_table(
        "instance_counts",
        sa.Column("workflow_id", sa.String(length=36), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workflow_id"],
            ["workflows.id"],
            name=op.f("fk_instance_counts_workflow_id_workflows"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workflow_id", "status", "slot", name=op.f("pk_instance_counts")),
    )
    op.execute(
        "INSERT INTO instance_counts (workflow_id, status, slot, n) "
        "SELECT workflow_id, status, 0, count(*) FROM instances GROUP BY workflow_id, status"
    )
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            "CREATE TRIGGER instances_count_insert AFTER INSERT ON instances BEGIN"
            + _SQLITE_ADD.format(row="NEW", delta=1)
            + "END"
        )
        op.execute(
            "CREATE TRIGGER instances_count_update AFTER UPDATE OF status ON instances "
            "WHEN OLD.status <> NEW.status BEGIN"
            + _SQLITE_ADD.format(row="NEW", delta=1)
            + _SQLITE_ADD.format(row="OLD", delta=-1)
            + "END"
        )
        op.execute(
            "CREATE TRIGGER instances_count_delete AFTER DELETE ON instances BEGIN"
            + _SQLITE_ADD.format(row="OLD", delta=-1)
            + "END"
        )
        return
    op.execute(_PG_FUNCTION)
    op.execute(
        "CREATE TRIGGER instances_count_insert AFTER INSERT OR DELETE ON instances "
        "FOR EACH ROW EXECUTE FUNCTION stepstone_count_instances()"
    )
    op.execute(
        "CREATE TRIGGER instances_count_update AFTER UPDATE OF status ON instances "
        "FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status) "
        "EXECUTE FUNCTION stepstone_count_instances()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER instances_count_{name}")
    else:
        op.execute("DROP TRIGGER instances_count_insert ON instances")
        op.execute("DROP TRIGGER instances_count_update ON instances")
        op.execute("DROP FUNCTION stepstone_count_instances()")
    op.drop_table("instance_counts")
