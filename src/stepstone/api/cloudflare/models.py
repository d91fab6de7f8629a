"""Response models of the Cloudflare-compatible API: exactly what ``shapes`` builds.

They document ``/openapi.json`` and FastAPI validates each answer against them. Every model
forbids unknown keys, so a field the shapes add without a model here fails loudly instead of
vanishing from the answer. Keys the shapes only sometimes write (``result_info``, an
instance's ``rollback`` and ``schedule``) have defaults; routes serialise with
``response_model_exclude_unset`` so an absent key stays absent rather than becoming ``null``.
"""

from __future__ import annotations

from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")

InstanceStatusName = Literal[
    "queued",
    "running",
    "paused",
    "waitingForPause",
    "waiting",
    "errored",
    "terminated",
    "complete",
    "rollingBack",
]
TriggerSourceName = Literal["unknown", "api", "binding", "event", "cron"]
Timestamp = Annotated[
    str, Field(description="ISO 8601, UTC, milliseconds: 2024-01-01T00:00:00.000Z")
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------------- envelope
class ErrorItem(_Model):
    code: int
    message: str


class PageInfo(_Model):
    """Paging of workflow and version lists."""

    page: int
    per_page: int
    count: int
    total_count: int


class PageCursorInfo(PageInfo):
    """Instance lists paged by ``page``: the cursor of the next page comes along."""

    cursor: str | None


class CursorInfo(_Model):
    """Instance lists paged by ``cursor``."""

    per_page: int
    count: int
    cursor: str | None


ResultInfo = PageCursorInfo | PageInfo | CursorInfo


class Envelope(_Model, Generic[T]):
    """Cloudflare's v4 envelope around a successful answer."""

    success: bool
    errors: list[ErrorItem]
    messages: list[str]
    result: T
    result_info: ResultInfo | None = None


class ErrorEnvelope(_Model):
    """Cloudflare's v4 envelope around a failure: one error, no result."""

    success: Literal[False]
    errors: list[ErrorItem]
    messages: list[str]
    result: None


# ---------------------------------------------------------------------- workflows
class InstanceCounts(_Model):
    """How many instances of the workflow are in each status."""

    queued: int
    running: int
    paused: int
    waitingForPause: int  # Cloudflare's spelling
    waiting: int
    errored: int
    terminated: int
    complete: int
    rollingBack: int


class ScheduleInfo(_Model):
    cron: str
    next_instance: Timestamp | None


class _WorkflowFields(_Model):
    id: str
    name: str
    class_name: str
    script_name: str
    created_on: Timestamp
    modified_on: Timestamp
    triggered_on: Timestamp | None


class WorkflowInfo(_WorkflowFields):
    instances: InstanceCounts
    schedules: list[ScheduleInfo]


class WorkflowUpdate(_WorkflowFields):
    is_deleted: int
    terminator_running: int
    version_id: str


class Deleted(_Model):
    status: str
    success: bool


class ScriptInfo(_Model):
    id: str
    etag: str
    created_on: Timestamp
    modified_on: Timestamp


# ---------------------------------------------------------------------- versions
class VersionHeader(_Model):
    id: str
    workflow_id: str
    class_name: str
    created_on: Timestamp
    modified_on: Timestamp


class VersionLimits(_Model):
    steps: int


class VersionInfo(VersionHeader):
    has_dag: bool
    language: str
    limits: VersionLimits


class GraphWorkflow(_Model):
    class_name: str
    functions: dict[str, Any]
    nodes: list[Any]


class Graph(_Model):
    version: int
    workflow: GraphWorkflow


class VersionGraph(VersionHeader):
    graph: Graph


class VersionDag(VersionHeader):
    dag: dict[str, Any]


# ---------------------------------------------------------------------- instances
class InstanceCreated(_Model):
    id: str
    status: InstanceStatusName
    version_id: str
    workflow_id: str
    trigger_source: TriggerSourceName


class InstanceSummary(_Model):
    id: str
    workflow_id: str
    version_id: str
    status: InstanceStatusName
    created_on: Timestamp
    modified_on: Timestamp
    started_on: Timestamp | None
    ended_on: Timestamp | None
    trigger_source: TriggerSourceName


class ErrorInfo(_Model):
    name: str
    message: str


class AttemptInfo(_Model):
    start: Timestamp
    end: Timestamp | None
    success: bool | None
    error: ErrorInfo | None


class TaskStep(_Model):
    """A ``step.do`` (or a rollback of one) in an instance's step list."""

    name: str
    type: Literal["step", "rollback"]
    start: Timestamp
    end: Timestamp | None
    success: bool | None
    output: str | None = Field(description="JSON text of the output, or [REDACTED]")
    config: dict[str, Any]
    attempts: list[AttemptInfo]


class SleepStep(_Model):
    name: str
    type: Literal["sleep"]
    start: Timestamp
    end: Timestamp | None
    finished: bool
    error: ErrorInfo | None


class WaitStep(_Model):
    name: str
    type: Literal["waitForEvent"]
    start: Timestamp
    end: Timestamp | None
    finished: bool
    error: ErrorInfo | None
    event_type: str | None
    output: str | None = Field(description="JSON text of the event payload, or [REDACTED]")


class Trigger(_Model):
    source: TriggerSourceName


class TerminationStep(_Model):
    type: Literal["termination"]
    trigger: Trigger


StepInfo = Annotated[TaskStep | SleepStep | WaitStep | TerminationStep, Field(discriminator="type")]


class RollbackInfo(_Model):
    outcome: str
    error: ErrorInfo | None


class InstanceSchedule(_Model):
    """The cron tick that started the instance."""

    cron: str
    scheduledTime: int  # Cloudflare's spelling


class InstanceDetail(_Model):
    status: InstanceStatusName
    params: Any
    output: Any
    error: ErrorInfo | None
    queued: Timestamp
    start: Timestamp | None
    end: Timestamp | None
    success: bool | None
    trigger: Trigger
    versionId: str  # Cloudflare's spelling
    step_count: int
    steps: list[StepInfo]
    rollback: RollbackInfo | None = None
    schedule: InstanceSchedule | None = None


class TerminateJob(_Model):
    status: Literal["idle", "running", "completed"]
    instancesTerminated: int  # Cloudflare's spelling


class StepResult(_Model):
    status: Literal["running", "waiting", "complete", "errored"]
    error: ErrorInfo | None
    output: Any


class StatusChanged(_Model):
    status: InstanceStatusName
    timestamp: Timestamp


class EventSent(_Model):
    instanceId: str  # Cloudflare's spelling
    timestamp: Timestamp


#: Every failure answer, by status, for ``APIRouter(responses=...)``.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorEnvelope, "description": description}
    for status, description in (
        (400, "Bad request: invalid parameters or body, or a refused operation"),
        (401, "Missing or unknown API token"),
        (403, "The token lacks the scope"),
        (404, "No such workflow, version, instance or step"),
        (409, "The instance's status does not allow the change"),
        (413, "Request body too large"),
        (500, "Internal error"),
        (503, "The database is unavailable"),
    )
}
