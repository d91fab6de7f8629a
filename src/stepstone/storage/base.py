"""The one storage interface. Operations are domain operations, each one transaction.

Writes a worker makes on an instance it owns are fenced by its ``Claim``: they succeed only while
the claim's owner and epoch still hold the instance, and raise ``LeaseLostError`` otherwise. The
store never decides a status transition: callers pass the statuses they expect.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from stepstone.domain.records import (
    ApiKey,
    Claim,
    Event,
    Instance,
    Job,
    Script,
    StepRecord,
    TriggerSource,
    Version,
    Workflow,
)
from stepstone.domain.status import InstanceStatus


class _Keep:
    """Marks an argument that leaves a column as it is."""

    def __repr__(self) -> str:
        return "KEEP"


KEEP: Any = _Keep()


class LeaseLostError(BaseException):
    """The worker no longer owns the instance (terminated, restarted or taken over)."""


@dataclass(frozen=True, slots=True)
class NewInstance:
    workflow_id: str
    version_id: str
    tenant: str
    id: str
    params: str
    trigger_source: TriggerSource = TriggerSource.API
    schedule: dict[str, Any] | None = None
    success_retention_ms: int | None = None
    error_retention_ms: int | None = None
    parent_pk: int | None = None
    parent_step: str | None = None
    retry_of: str | None = None
    tags: Mapping[str, str] | None = None
    max_parallel_steps: int | None = None
    expires_at: int | None = None
    created_by: str | None = None
    triggered_by: str | None = None
    depth: int = 0


@dataclass(frozen=True, slots=True)
class StartLease:
    """Create the first ``count`` new instances already running, leased to ``owner`` (epoch 1)
    until ``expires_at``: a worker in the creating process starts them without a claim."""

    owner: str
    expires_at: int
    count: int


@dataclass(frozen=True, slots=True)
class NewVersion:
    class_name: str
    script_name: str
    archive: bytes
    module: str
    source_hash: str
    max_steps: int
    language: str = "python"


@dataclass(frozen=True, slots=True)
class OwnedInstance:
    """What a lease renewal reports about an instance the worker still owns."""

    pk: int
    status: InstanceStatus
    epoch: int
    ready_at: int | None


@dataclass(frozen=True, slots=True)
class DueSchedule:
    workflow_id: str
    cron: str
    next_at: int
    version_id: str | None
    tenant: str


@dataclass(frozen=True, slots=True)
class Page:
    items: Sequence[Instance]
    next_cursor: str | None
    total: int | None = None


@dataclass(frozen=True, slots=True)
class InstanceFilter:
    """What an instance list asks for. ``offset`` pages by position, ``cursor`` by key."""

    status: InstanceStatus | None = None
    created_from: int | None = None
    created_to: int | None = None
    newest_first: bool = True
    limit: int = 50
    offset: int = 0
    cursor: str | None = None
    count: bool = False


@dataclass(frozen=True, slots=True)
class RunFilter:
    """A project's runs, newest first: by statuses (``timed_out`` splits errored runs into
    those that passed their deadline and the others), optionally of one workflow."""

    statuses: frozenset[InstanceStatus] | None = None
    timed_out: bool | None = None
    workflow_id: str | None = None
    limit: int = 50
    offset: int = 0
    cursor: str | None = None


@dataclass(frozen=True, slots=True)
class EventDelivery:
    """What ``deliver_event`` found: the instance, and whether it took the event."""

    pk: int
    status: InstanceStatus
    held: bool
    """Leased by a worker, which wakes the waiting instance in memory."""
    added: bool
    """False when the instance's status takes no events."""
    seq: int | None = None
    """The event's number, when it was added."""
    first: bool = False
    """No other event of its type was pending for the held instance: a wait for that type may
    take this one at once, without reading the instance's events (``InstanceRun.offer``).
    Looked at only when a worker holds the instance (no run to hand it to otherwise)."""


@dataclass(frozen=True, slots=True)
class WaitingStep:
    """An instance's step waiting for an event (the workflow-runs API sends to keys)."""

    pk: int
    instance_id: str
    step: str
    since: int


class Store(Protocol):
    """Durable state of workflows, versions, instances, steps and events."""

    # lifecycle
    async def migrate(self) -> None: ...
    async def close(self) -> None: ...
    async def ping(self) -> None: ...
    def listen(self, on_signal: Callable[[int | None], None]) -> Callable[[], None]:
        """Have ``on_signal(instance pk, or None for "new work")`` called, from any thread,
        when another process creates work or changes an instance; returns a function that
        stops listening. Backends without notifications never call it (workers poll)."""
        ...

    # workflows and versions
    async def put_workflow(
        self,
        tenant: str,
        name: str,
        *,
        class_name: str,
        script_name: str,
        schedules: Mapping[str, int],
        now: int,
        settings: Mapping[str, Any] | None = None,
    ) -> Workflow:
        """Create or update; ``schedules`` maps each cron to its first fire time if new;
        ``settings`` (limits, concurrency, retention) replace the stored ones when given."""
        ...

    async def add_version(self, workflow_id: str, version: NewVersion, now: int) -> Version: ...
    async def get_workflow(self, tenant: str, name: str) -> Workflow | None: ...
    async def get_workflow_by_id(self, workflow_id: str) -> Workflow | None: ...
    async def list_workflows(
        self, tenant: str, *, search: str | None = None, limit: int | None = None, offset: int = 0
    ) -> tuple[list[Workflow], int]:
        """A page of the tenant's workflows by name, and how many match in all."""
        ...

    async def delete_workflow(self, workflow_id: str) -> bool: ...
    async def set_terminate_job(self, workflow_id: str, job: Mapping[str, Any]) -> None: ...
    async def put_script(
        self, tenant: str, name: str, archive: bytes, source_hash: str, now: int
    ) -> Script: ...
    async def get_script(self, tenant: str, name: str) -> Script | None: ...
    async def put_jobs(
        self, tenant: str, script_name: str, jobs: Mapping[str, tuple[str, str]], now: int
    ) -> None:
        """Register ``jobs`` (name -> (module, function)) as the script's; the script's jobs
        that ``jobs`` no longer names are removed."""
        ...

    async def get_job(self, tenant: str, name: str) -> Job | None: ...
    async def list_jobs(self, tenant: str) -> list[Job]: ...
    async def get_version(self, version_id: str) -> Version | None: ...
    async def list_versions(self, workflow_id: str) -> list[Version]: ...
    async def count_instances(self, workflow_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        """Instances per status, for each workflow, in one query (lists show them all)."""
        ...

    # instances, as users see them
    async def create_instances(
        self,
        new: Sequence[NewInstance],
        now: int,
        *,
        history: Mapping[str, Sequence[StepRecord]] | None = None,
        lease: StartLease | None = None,
    ) -> list[Instance]:
        """Create instances in one transaction, each (by id) with ``history`` already recorded
        (a retried run's kept results, a graph run's disabled steps); with ``lease``, the first
        ones start running at once under it."""
        ...

    async def get_instance(self, workflow_id: str, instance_id: str) -> Instance | None: ...
    async def get_instance_by_pk(self, pk: int) -> Instance | None: ...
    async def list_instances(self, workflow_id: str, query: InstanceFilter) -> Page: ...
    async def change_status(
        self,
        pk: int,
        *,
        expected: InstanceStatus,
        target: InstanceStatus,
        now: int,
        fence: bool,
        ready_at: int | None = KEEP,
        clear_from_seq: int | None = None,
        purge_at: int | None = None,
        terminating: bool = False,
    ) -> Instance | None:
        """Compare-and-set a user's status change. ``fence`` takes the instance from its
        worker; ``clear_from_seq`` deletes the steps from that one on (0: all of them)."""
        ...

    async def add_event(
        self, pk: int, type: str, payload: str, now: int, *, wake: Collection[InstanceStatus]
    ) -> Event: ...
    async def deliver_event(
        self,
        tenant: str,
        workflow_name: str,
        instance_id: str,
        type: str,
        payload: str,
        now: int,
        *,
        accept: Collection[InstanceStatus],
        wake: Collection[InstanceStatus],
    ) -> EventDelivery | None:
        """Find the instance by name and buffer the event for it if its status is in
        ``accept``, in one transaction (one round trip to the database thread, not three);
        ``None`` if there is no such instance."""
        ...

    async def load_steps(self, pk: int) -> list[StepRecord]: ...

    # runs, as the workflow-runs API sees them
    async def find_instance(self, tenant: str, instance_id: str) -> Instance | None: ...
    async def list_runs(self, tenant: str, query: RunFilter) -> Page: ...
    async def edit_steps(
        self,
        pk: int,
        *,
        expected: Collection[InstanceStatus],
        target: InstanceStatus | None,
        now: int,
        put: Sequence[StepRecord] = (),
        remove: Collection[str] = (),
    ) -> Instance | None:
        """Replace records ``put`` and delete those named in ``remove``, take the instance
        from its worker, move it from one of ``expected`` to ``target`` (``None``: it keeps
        its status) and make it ready."""
        ...

    async def waiting_for(self, tenant: str, event_type: str) -> list[WaitingStep]: ...
    async def children_of(self, pk: int) -> list[Instance]: ...

    # instances, as workers drive them
    async def claim(
        self,
        owner: str,
        now: int,
        lease_ms: int,
        limit: int,
        runnable: Collection[InstanceStatus],
        *,
        start: Mapping[InstanceStatus, InstanceStatus] | None = None,
        first: Collection[InstanceStatus] = (),
        lapsed: bool = True,
        ahead_ms: int = 0,
        new_limit: int | None = None,
    ) -> list[Claim]:
        """Take up to ``limit`` ready instances in ``runnable`` statuses under a lease. ``start``
        maps statuses to the ones claimed instances move to at once (setting ``started_at``
        if unset): the runtime's first move, in the claim's own transaction. Instances whose
        lease ran out come first (only with ``lapsed``), then those in ``first`` statuses
        (ready now, or within ``ahead_ms``), then the others (at most ``new_limit``)."""
        ...

    async def renew(
        self, owner: str, now: int, lease_ms: int, *, pks: Collection[int]
    ) -> list[OwnedInstance]:
        """Extend ``owner``'s leases on ``pks``, the instances it is running. Any other
        instance it still owns (its run stopped on a database error) is left to lapse, so
        that a worker resumes it."""
        ...

    async def purge(self, now: int, limit: int) -> int:
        """Delete up to ``limit`` finished instances whose retention ran out; how many."""
        ...

    async def owned(self, owner: str) -> list[OwnedInstance]:
        """What ``owner`` still owns, without renewing (a cheap look between heartbeats)."""
        ...

    async def release(self, claims: Sequence[Claim]) -> None:
        """Hand back these claims' leases (if still theirs), so any worker may go on at once."""
        ...

    async def release_all(self, owner: str) -> None: ...
    async def due_schedules(self, now: int, limit: int) -> list[DueSchedule]: ...
    async def fire_schedule(
        self, due: DueSchedule, next_at: int, instance: NewInstance, now: int
    ) -> Instance | None:
        """Move ``due`` to ``next_at`` and create ``instance``, once however many try."""
        ...

    async def next_wakeup(self, now: int, *, schedules: bool = True) -> int | None:
        """The earliest future instance timer (and cron tick, with ``schedules``)."""
        ...

    async def save_steps(self, claim: Claim, records: Sequence[StepRecord]) -> None:
        """Commit ``records`` (``LeaseLostError`` unless ``claim`` holds); shares a transaction
        with the other step results committed at the same time."""
        ...

    async def pending_event(self, pk: int, type: str, skip: Collection[int] = ()) -> Event | None:
        """The earliest event of ``type`` sent to instance ``pk`` and not consumed, leaving out
        the events numbered in ``skip``. A read: the event is consumed by the commit of the
        wait's completed record (``StepRecord.event_seq``), fenced like any step result."""
        ...

    async def move(
        self,
        claim: Claim,
        *,
        expected: Collection[InstanceStatus],
        target: InstanceStatus,
        now: int,
        ready_at: int | None = KEEP,
        release: bool = False,
        wake_for: Collection[str] = (),
        steps: Sequence[StepRecord] = (),
        **fields: Any,
    ) -> bool:
        """Compare-and-set the status of an owned instance (with ``fields``); ``release`` hands
        the lease back. With ``wake_for``, an unconsumed event of one of those types makes the
        instance ready at once, atomically with the move, so no arriving event is missed.
        ``steps`` are committed with the move (if it happens)."""
        ...

    # api keys
    async def add_key(self, key: ApiKey, secret_hash: str) -> None:
        """Store a new key with the hash of its secret (``ConflictError`` if the id is taken)."""
        ...

    async def find_key(self, key_id: str) -> tuple[ApiKey, str] | None:
        """The key and its stored secret hash."""
        ...

    async def list_keys(self, tenant: str | None) -> list[ApiKey]: ...
    async def revoke_key(self, key_id: str, now: int) -> bool:
        """Revoke a live key; ``False`` if it is unknown or already revoked."""
        ...
