"""graph runs: run lineage, tags, limits and deadlines; project-wide run lists; jobs

Graph workflows' runs (the workflow-runs API) are instances with more to say: the run they
retry, the parent run and step of a child run and its nesting depth, tags, their own
``max_parallel_steps``, a deadline, who created and what triggered them. Runs are listed and
found by project (tenant) across workflows, and ``wait_for_event`` steps are found by their key.
Jobs are Python functions, registered by name from deployed scripts, that job steps run.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_WAITING_EVENT = "state = 'waiting' AND event_type IS NOT NULL"


def upgrade() -> None:
    with op.batch_alter_table("instances", schema=None) as batch_op:
        batch_op.add_column(sa.Column("parent_pk", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("parent_step", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("retry_of", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("tags", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("max_parallel_steps", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("expires_at", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("created_by", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("triggered_by", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("depth", sa.Integer(), server_default="0", nullable=False))
        batch_op.create_index(
            "ix_instances_tenant_created", ["tenant", "created_at", "pk"], unique=False
        )
        batch_op.create_index(
            "ix_instances_tenant_status_created",
            ["tenant", "status", "created_at", "pk"],
            unique=False,
        )
        batch_op.create_index("ix_instances_tenant_id", ["tenant", "id"], unique=False)
        batch_op.create_index(
            "ix_instances_parent",
            ["parent_pk"],
            unique=False,
            postgresql_where=sa.text("parent_pk IS NOT NULL"),
            sqlite_where=sa.text("parent_pk IS NOT NULL"),
        )
    with op.batch_alter_table("steps", schema=None) as batch_op:
        batch_op.create_index(
            "ix_steps_waiting_event",
            ["event_type"],
            unique=False,
            postgresql_where=sa.text(_WAITING_EVENT),
            sqlite_where=sa.text(_WAITING_EVENT),
        )
    op.create_table(
        "jobs",
        sa.Column("tenant", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("script_name", sa.String(length=255), nullable=False),
        sa.Column("module", sa.String(length=255), nullable=False),
        sa.Column("function", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("modified_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "name", name=op.f("pk_jobs")),
    )


def downgrade() -> None:
    op.drop_table("jobs")
    with op.batch_alter_table("steps", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_steps_waiting_event",
            postgresql_where=sa.text(_WAITING_EVENT),
            sqlite_where=sa.text(_WAITING_EVENT),
        )
    with op.batch_alter_table("instances", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_instances_parent",
            postgresql_where=sa.text("parent_pk IS NOT NULL"),
            sqlite_where=sa.text("parent_pk IS NOT NULL"),
        )
        batch_op.drop_index("ix_instances_tenant_id")
        batch_op.drop_index("ix_instances_tenant_status_created")
        batch_op.drop_index("ix_instances_tenant_created")
        for column in (
            "depth",
            "triggered_by",
            "created_by",
            "expires_at",
            "max_parallel_steps",
            "tags",
            "retry_of",
            "parent_step",
            "parent_pk",
        ):
            batch_op.drop_column(column)
