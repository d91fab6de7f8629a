"""What the store keeps, as frozen records. Times are integer milliseconds since the epoch."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from stepstone.domain.status import InstanceStatus


class StepType(StrEnum):
    STEP = "step"
    SLEEP = "sleep"
    WAIT_FOR_EVENT = "waitForEvent"
    ROLLBACK = "rollback"


class StepState(StrEnum):
    RUNNING = "running"
    """An attempt is under way, or the next attempt is due at ``wake_at``."""
    WAITING = "waiting"
    """A sleep or a wait for an event that has not ended yet."""
    COMPLETE = "complete"
    ERRORED = "errored"
    SKIPPED = "skipped"
    """Settled without running: a graph step whose condition was false, or that a user or a
    failed step it depends on skipped. Final, as ``complete`` is."""


class TriggerSource(StrEnum):
    UNKNOWN = "unknown"
    API = "api"
    BINDING = "binding"
    EVENT = "event"
    CRON = "cron"


@dataclass(frozen=True, slots=True)
class Workflow:
    id: str
    tenant: str
    name: str
    class_name: str
    script_name: str
    current_version_id: str | None
    schedules: tuple[str, ...]
    created_at: int
    modified_at: int
    triggered_at: int | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    """As the Cloudflare API sets them: ``limits``, ``concurrency``, ``default_retention``."""
    terminate_job: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Script:
    """Uploaded source a workflow version is made from (a zip of one or more modules)."""

    tenant: str
    name: str
    archive: bytes
    source_hash: str
    created_at: int
    modified_at: int


@dataclass(frozen=True, slots=True)
class Job:
    """A Python function a deployed script registered by name (``@stepstone.job``), for graph
    workflows' job steps (``job_id``) to run."""

    tenant: str
    name: str
    script_name: str
    module: str
    function: str
    created_at: int
    modified_at: int


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A tenant's key; only a hash of its secret is ever stored."""

    id: str
    tenant: str
    name: str
    scopes: tuple[str, ...]
    created_at: int
    owner: str | None = None
    revoked_at: int | None = None


@dataclass(frozen=True, slots=True)
class Version:
    id: str
    workflow_id: str
    number: int
    class_name: str
    script_name: str
    language: str
    archive: bytes
    """A zip of the script (one module, or a folder of modules): importable as it is."""
    module: str
    """The module inside the archive that defines ``class_name``."""
    source_hash: str
    max_steps: int
    created_at: int


@dataclass(frozen=True, slots=True)
class Attempt:
    start: int
    end: int | None = None
    success: bool | None = None
    error_name: str | None = None
    error_message: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "end": self.end,
            "success": self.success,
            "error": None
            if self.error_name is None
            else {"name": self.error_name, "message": self.error_message or ""},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Attempt:
        error = data.get("error") or {}
        return cls(
            start=data["start"],
            end=data.get("end"),
            success=data.get("success"),
            error_name=error.get("name"),
            error_message=error.get("message"),
        )


@dataclass(frozen=True, slots=True)
class StepRecord:
    """One durable step of an instance, keyed by name and occurrence (``count``, from 1)."""

    name: str
    count: int
    type: StepType
    state: StepState
    seq: int
    started_at: int
    ended_at: int | None = None
    wake_at: int | None = None
    """When a sleep ends, a wait times out or the next attempt of a retried step is due."""
    config: dict[str, Any] | None = None
    attempts: tuple[Attempt, ...] = ()
    output: str | None = None
    """JSON text of the result (a wait's event), kept as committed."""
    error_name: str | None = None
    error_message: str | None = None
    event_type: str | None = None
    event_seq: int | None = None
    """The event a completed wait took, until the commit that carries this record marks the
    event consumed (not a column: committed steps have it as ``None``)."""

    @property
    def key(self) -> tuple[str, int]:
        return (self.name, self.count)

    def completed_at(self, at: int) -> StepRecord:
        """This record, complete since ``at``: ``dataclasses.replace`` without its walk over
        the fields (this is on every replay of a sleep)."""
        return StepRecord(
            self.name,
            self.count,
            self.type,
            StepState.COMPLETE,
            self.seq,
            self.started_at,
            at,
            self.wake_at,
            self.config,
            self.attempts,
            self.output,
            self.error_name,
            self.error_message,
            self.event_type,
            self.event_seq,
        )


@dataclass(frozen=True, slots=True)
class Instance:
    pk: int
    id: str
    workflow_id: str
    version_id: str
    tenant: str
    status: InstanceStatus
    params: str
    """JSON text of the event payload."""
    trigger_source: TriggerSource
    created_at: int
    modified_at: int
    started_at: int | None = None
    ended_at: int | None = None
    output: str | None = None
    error_name: str | None = None
    error_message: str | None = None
    ready_at: int | None = None
    """When a worker should next drive the instance; ``None`` while nothing can move it."""
    lease_owner: str | None = None
    lease_expires_at: int | None = None
    lease_epoch: int = 0
    rollback_outcome: str | None = None
    rollback_error_name: str | None = None
    rollback_error_message: str | None = None
    schedule: dict[str, Any] | None = field(default=None)
    success_retention_ms: int | None = None
    error_retention_ms: int | None = None
    purge_at: int | None = None
    terminating: bool = False
    """Terminated with rollback: compensations run, then the instance ends terminated."""
    parent_pk: int | None = None
    """A child run's parent instance (a graph ``sub_workflow`` step), and that step's ref."""
    parent_step: str | None = None
    retry_of: str | None = None
    """The id of the run this one retries (graph runs' retry)."""
    tags: dict[str, str] | None = None
    max_parallel_steps: int | None = None
    expires_at: int | None = None
    """When the run times out (a graph workflow's ``timeout_secs``)."""
    created_by: str | None = None
    triggered_by: str | None = None
    """How a graph run started, in Strait's words (manual, cron, workflow, retry)."""
    depth: int = 0
    """How deep a child run is nested (0 for a run nobody started)."""


@dataclass(frozen=True, slots=True)
class Event:
    seq: int
    type: str
    payload: str
    """JSON text."""
    received_at: int


@dataclass(frozen=True, slots=True)
class Claim:
    """An instance a worker now owns, fenced by ``epoch``: writes under an older one are refused."""

    instance: Instance
    owner: str
    epoch: int
    steps: tuple[StepRecord, ...] | None = None
    """The instance's step records, read with the claim; ``None``: not read, load them."""
