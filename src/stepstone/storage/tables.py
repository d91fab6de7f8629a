"""The schema, as SQLAlchemy Core tables. Alembic migrations must produce exactly this."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# Integer primary keys are SQLite rowids; BIGINT identities elsewhere.
PK = BigInteger().with_variant(Integer(), "sqlite")
Millis = BigInteger

workflows = Table(
    "workflows",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant", String(128), nullable=False),
    Column("name", String(64), nullable=False),
    Column("class_name", String(255), nullable=False),
    Column("script_name", String(255), nullable=False),
    Column("current_version_id", String(36), nullable=True),
    Column("schedules", Text, nullable=False, server_default="[]"),
    Column("settings", Text, nullable=False, server_default="{}"),
    # JSON: limits, concurrency, default_retention, as the Cloudflare API sets them.
    Column("terminate_job", Text, nullable=True),
    # settings["concurrency"]["limit"], as a column so that claiming can respect it.
    Column("concurrency_limit", Integer, nullable=True),
    # JSON status of the last terminate-all job.
    Column("created_at", Millis, nullable=False),
    Column("modified_at", Millis, nullable=False),
    Column("triggered_at", Millis, nullable=True),
    UniqueConstraint("tenant", "name"),
)

versions = Table(
    "versions",
    metadata,
    Column("id", String(36), primary_key=True),
    Column(
        "workflow_id", String(36), ForeignKey("workflows.id", ondelete="CASCADE"), nullable=False
    ),
    Column("number", Integer, nullable=False),
    Column("class_name", String(255), nullable=False),
    Column("script_name", String(255), nullable=False),
    Column("language", String(16), nullable=False),
    Column("archive", LargeBinary, nullable=False),
    Column("module", String(255), nullable=False),
    Column("source_hash", String(64), nullable=False),
    Column("max_steps", Integer, nullable=False),
    Column("created_at", Millis, nullable=False),
    UniqueConstraint("workflow_id", "number"),
)

instances = Table(
    "instances",
    metadata,
    Column("pk", PK, primary_key=True, autoincrement=True),
    Column("id", String(100), nullable=False),
    Column(
        "workflow_id", String(36), ForeignKey("workflows.id", ondelete="CASCADE"), nullable=False
    ),
    Column("version_id", String(36), ForeignKey("versions.id"), nullable=False),
    Column("tenant", String(128), nullable=False),
    Column("status", String(16), nullable=False),
    Column("params", Text, nullable=False),
    Column("trigger_source", String(16), nullable=False),
    Column("schedule", Text, nullable=True),
    # How long to keep the instance once it ends, by outcome; None keeps it for good.
    Column("success_retention_ms", Millis, nullable=True),
    Column("error_retention_ms", Millis, nullable=True),
    Column("purge_at", Millis, nullable=True),
    Column("output", Text, nullable=True),
    Column("error_name", Text, nullable=True),
    Column("error_message", Text, nullable=True),
    Column("rollback_outcome", String(16), nullable=True),
    Column("rollback_error_name", Text, nullable=True),
    Column("rollback_error_message", Text, nullable=True),
    Column("created_at", Millis, nullable=False),
    Column("modified_at", Millis, nullable=False),
    Column("started_at", Millis, nullable=True),
    Column("ended_at", Millis, nullable=True),
    Column("ready_at", Millis, nullable=True),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_expires_at", Millis, nullable=True),
    Column("lease_epoch", Integer, nullable=False, server_default="0"),
    # A terminate with rollback: compensate, then end as terminated (not errored).
    Column("terminating", Boolean, nullable=False, server_default=text("false")),
    # Graph runs (the workflow-runs API): lineage, tags, limits, deadline, provenance.
    Column("parent_pk", BigInteger, nullable=True),
    Column("parent_step", String(255), nullable=True),
    Column("retry_of", String(100), nullable=True),
    Column("tags", Text, nullable=True),
    Column("max_parallel_steps", Integer, nullable=True),
    Column("expires_at", Millis, nullable=True),
    Column("created_by", String(255), nullable=True),
    Column("triggered_by", String(32), nullable=True),
    Column("depth", Integer, nullable=False, server_default="0"),
    UniqueConstraint("workflow_id", "id"),
    # Claims: ready instances nobody holds, by status, oldest first.
    Index(
        "ix_instances_free_ready",
        "status",
        "ready_at",
        postgresql_where=text("lease_owner IS NULL AND ready_at IS NOT NULL"),
        sqlite_where=text("lease_owner IS NULL AND ready_at IS NOT NULL"),
    ),
    Index(
        "ix_instances_owner",
        "lease_owner",
        postgresql_where=text("lease_owner IS NOT NULL"),
        sqlite_where=text("lease_owner IS NOT NULL"),
    ),
    # Lists: newest first, optionally by status.
    Index("ix_instances_workflow_created", "workflow_id", "created_at", "pk"),
    Index("ix_instances_workflow_status_created", "workflow_id", "status", "created_at", "pk"),
    # Runs of a project across its workflows, and a run found by id within its project.
    Index("ix_instances_tenant_created", "tenant", "created_at", "pk"),
    Index("ix_instances_tenant_status_created", "tenant", "status", "created_at", "pk"),
    Index("ix_instances_tenant_id", "tenant", "id"),
    Index(
        "ix_instances_parent",
        "parent_pk",
        postgresql_where=text("parent_pk IS NOT NULL"),
        sqlite_where=text("parent_pk IS NOT NULL"),
    ),
    Index(
        "ix_instances_purge_at",
        "purge_at",
        postgresql_where=text("purge_at IS NOT NULL"),
        sqlite_where=text("purge_at IS NOT NULL"),
    ),
)

instance_counts = Table(
    "instance_counts",
    metadata,
    # Kept by triggers on ``instances`` (migration 0003); a count is the sum over slots.
    Column(
        "workflow_id",
        String(36),
        ForeignKey("workflows.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("status", String(16), primary_key=True),
    Column("slot", Integer, primary_key=True),
    Column("n", BigInteger, nullable=False),
)

steps = Table(
    "steps",
    metadata,
    Column("instance_pk", PK, ForeignKey("instances.pk", ondelete="CASCADE"), primary_key=True),
    Column("name", String(255), primary_key=True),
    Column("count", Integer, primary_key=True),
    Column("type", String(16), nullable=False),
    Column("state", String(16), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("started_at", Millis, nullable=False),
    Column("ended_at", Millis, nullable=True),
    Column("wake_at", Millis, nullable=True),
    Column("config", Text, nullable=True),
    Column("attempts", Text, nullable=False, server_default="[]"),
    Column("output", Text, nullable=True),
    Column("error_name", Text, nullable=True),
    Column("error_message", Text, nullable=True),
    Column("event_type", String(255), nullable=True),
    # wait_for_event steps by key (the workflow-runs API sends to a key, not an instance).
    Index(
        "ix_steps_waiting_event",
        "event_type",
        postgresql_where=text("state = 'waiting' AND event_type IS NOT NULL"),
        sqlite_where=text("state = 'waiting' AND event_type IS NOT NULL"),
    ),
)

events = Table(
    "events",
    metadata,
    Column("seq", PK, primary_key=True, autoincrement=True),
    Column("instance_pk", PK, ForeignKey("instances.pk", ondelete="CASCADE"), nullable=False),
    Column("type", String(255), nullable=False),
    Column("payload", Text, nullable=False),
    Column("received_at", Millis, nullable=False),
    Column("consumed_by_name", String(255), nullable=True),
    Column("consumed_by_count", Integer, nullable=True),
    # Buffered events of one type, in arrival order.
    Index("ix_events_pending", "instance_pk", "type", "seq"),
)

schedules = Table(
    "schedules",
    metadata,
    Column(
        "workflow_id",
        String(36),
        ForeignKey("workflows.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("cron", String(255), primary_key=True),
    Column("next_at", Millis, nullable=False),
    Index("ix_schedules_next_at", "next_at"),
)

scripts = Table(
    "scripts",
    metadata,
    Column("tenant", String(128), primary_key=True),
    Column("name", String(255), primary_key=True),
    Column("archive", LargeBinary, nullable=False),
    Column("source_hash", String(64), nullable=False),
    Column("created_at", Millis, nullable=False),
    Column("modified_at", Millis, nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("tenant", String(128), nullable=False),
    Column("name", String(255), nullable=False),
    Column("owner", String(255), nullable=True),
    Column("secret_hash", String(64), nullable=False),
    # SHA-256 of the secret: keys are long random strings, so a fast hash is enough.
    Column("scopes", Text, nullable=False),
    Column("created_at", Millis, nullable=False),
    Column("last_used_at", Millis, nullable=True),
    Column("revoked_at", Millis, nullable=True),
    Index("ix_api_keys_tenant", "tenant"),
)

jobs = Table(
    "jobs",
    metadata,
    # A Python function a deployed script registered by name, for graph job steps to run.
    Column("tenant", String(128), primary_key=True),
    Column("name", String(255), primary_key=True),
    Column("script_name", String(255), nullable=False),
    Column("module", String(255), nullable=False),
    Column("function", String(255), nullable=False),
    Column("created_at", Millis, nullable=False),
    Column("modified_at", Millis, nullable=False),
)
