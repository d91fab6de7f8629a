"""Rows to records and back, and the opaque cursors lists hand out."""

from __future__ import annotations

import base64
import functools
import json
import re
from typing import Any

from sqlalchemy import Row

from stepstone.domain.errors import ValidationError
from stepstone.domain.records import (
    ApiKey,
    Attempt,
    Instance,
    Job,
    Script,
    StepRecord,
    StepState,
    StepType,
    TriggerSource,
    Version,
    Workflow,
)
from stepstone.domain.status import InstanceStatus
from stepstone.storage.base import NewInstance

# Enum members by value: a dict lookup, where calling the enum class costs a microsecond.
_STATUSES = {s.value: s for s in InstanceStatus}
_TRIGGERS = {t.value: t for t in TriggerSource}
_STEP_TYPES = {t.value: t for t in StepType}
_STEP_STATES = {s.value: s for s in StepState}

NEW_INSTANCE_COLUMNS = (
    "id",
    "workflow_id",
    "version_id",
    "tenant",
    "status",
    "params",
    "trigger_source",
    "schedule",
    "success_retention_ms",
    "error_retention_ms",
    "created_at",
    "modified_at",
    "ready_at",
    "lease_epoch",
    "terminating",
    "parent_pk",
    "parent_step",
    "retry_of",
    "tags",
    "max_parallel_steps",
    "expires_at",
    "created_by",
    "triggered_by",
    "depth",
    "started_at",
    "lease_owner",
    "lease_expires_at",
)
"""The columns ``new_instance_row`` fills."""


NO_OUTCOME: dict[str, Any] = {
    "ended_at": None,
    "output": None,
    "error_name": None,
    "error_message": None,
    "rollback_outcome": None,
    "rollback_error_name": None,
    "rollback_error_message": None,
}
"""How an instance that runs again (restarted, reopened by a step edit) forgets how it ended."""


def new_instance_row(n: NewInstance, now: int) -> dict[str, Any]:
    """A queued instance, ready now."""
    return {
        "id": n.id,
        "workflow_id": n.workflow_id,
        "version_id": n.version_id,
        "tenant": n.tenant,
        "status": InstanceStatus.QUEUED.value,
        "params": n.params,
        "trigger_source": n.trigger_source.value,
        "schedule": None if n.schedule is None else json.dumps(n.schedule),
        "success_retention_ms": n.success_retention_ms,
        "error_retention_ms": n.error_retention_ms,
        "created_at": now,
        "modified_at": now,
        "ready_at": now,
        "lease_epoch": 0,
        "terminating": False,
        "parent_pk": n.parent_pk,
        "parent_step": n.parent_step,
        "retry_of": n.retry_of,
        "tags": None if n.tags is None else json.dumps(dict(n.tags)),
        "max_parallel_steps": n.max_parallel_steps,
        "expires_at": n.expires_at,
        "created_by": n.created_by,
        "triggered_by": n.triggered_by,
        "depth": n.depth,
        "started_at": None,
        "lease_owner": None,
        "lease_expires_at": None,
    }


def started_instance_row(n: NewInstance, now: int, owner: str, expires_at: int) -> dict[str, Any]:
    """An instance created running, leased to a worker that starts it without a claim."""
    return {
        **new_instance_row(n, now),
        "status": InstanceStatus.RUNNING.value,
        "started_at": now,
        "lease_owner": owner,
        "lease_expires_at": expires_at,
        "lease_epoch": 1,
    }


def to_workflow(row: Row[Any]) -> Workflow:
    return Workflow(
        id=row.id,
        tenant=row.tenant,
        name=row.name,
        class_name=row.class_name,
        script_name=row.script_name,
        current_version_id=row.current_version_id,
        schedules=tuple(json.loads(row.schedules or "[]")),
        created_at=row.created_at,
        modified_at=row.modified_at,
        triggered_at=row.triggered_at,
        settings=json.loads(row.settings or "{}"),
        terminate_job=None if row.terminate_job is None else json.loads(row.terminate_job),
    )


def to_script(row: Row[Any]) -> Script:
    return Script(
        tenant=row.tenant,
        name=row.name,
        archive=bytes(row.archive),
        source_hash=row.source_hash,
        created_at=row.created_at,
        modified_at=row.modified_at,
    )


def to_job(row: Any) -> Job:
    return Job(
        tenant=row.tenant,
        name=row.name,
        script_name=row.script_name,
        module=row.module,
        function=row.function,
        created_at=row.created_at,
        modified_at=row.modified_at,
    )


def to_key(row: Row[Any]) -> ApiKey:
    return ApiKey(
        id=row.id,
        tenant=row.tenant,
        name=row.name,
        scopes=tuple(json.loads(row.scopes)),
        created_at=row.created_at,
        owner=row.owner,
        revoked_at=row.revoked_at,
    )


def to_version(row: Row[Any]) -> Version:
    return Version(
        id=row.id,
        workflow_id=row.workflow_id,
        number=row.number,
        class_name=row.class_name,
        script_name=row.script_name,
        language=row.language,
        archive=bytes(row.archive),
        module=row.module,
        source_hash=row.source_hash,
        max_steps=row.max_steps,
        created_at=row.created_at,
    )


def to_instance(row: Row[Any]) -> Instance:
    return Instance(
        pk=row.pk,
        id=row.id,
        workflow_id=row.workflow_id,
        version_id=row.version_id,
        tenant=row.tenant,
        status=_STATUSES[row.status],
        params=row.params,
        trigger_source=_TRIGGERS[row.trigger_source],
        created_at=row.created_at,
        modified_at=row.modified_at,
        started_at=row.started_at,
        ended_at=row.ended_at,
        output=row.output,
        error_name=row.error_name,
        error_message=row.error_message,
        ready_at=row.ready_at,
        lease_owner=row.lease_owner,
        lease_expires_at=row.lease_expires_at,
        lease_epoch=row.lease_epoch,
        rollback_outcome=row.rollback_outcome,
        rollback_error_name=row.rollback_error_name,
        rollback_error_message=row.rollback_error_message,
        schedule=None if row.schedule is None else json.loads(row.schedule),
        success_retention_ms=row.success_retention_ms,
        error_retention_ms=row.error_retention_ms,
        purge_at=row.purge_at,
        terminating=bool(row.terminating),
        parent_pk=row.parent_pk,
        parent_step=row.parent_step,
        retry_of=row.retry_of,
        tags=None if row.tags is None else json.loads(row.tags),
        max_parallel_steps=row.max_parallel_steps,
        expires_at=row.expires_at,
        created_by=row.created_by,
        triggered_by=row.triggered_by,
        depth=row.depth,
    )


def to_step(row: Any) -> StepRecord:
    """From a ``Row`` (where ``count`` is the tuple method) or a prepared ``Record``."""
    attempts = row.attempts
    return StepRecord(
        name=row.name,
        count=row._mapping["count"] if isinstance(row, Row) else row.count,
        type=_STEP_TYPES[row.type],
        state=_STEP_STATES[row.state],
        seq=row.seq,
        started_at=row.started_at,
        ended_at=row.ended_at,
        wake_at=row.wake_at,
        config=None if row.config is None else _config(row.config),
        attempts=_attempts(attempts),
        output=row.output,
        error_name=row.error_name,
        error_message=row.error_message,
        event_type=row.event_type,
    )


@functools.lru_cache(maxsize=1024)
def _config(text: str) -> dict[str, Any]:
    """Step configs repeat (every instance of a workflow has the same ones): parsed once.
    The dict is shared, so nothing may change it (nothing does: configs are read only)."""
    return json.loads(text)  # type: ignore[no-any-return]


_ONE_SUCCESS = re.compile(r'\[\{"start": (\d+), "end": (\d+), "success": true, "error": null\}\]')


def _attempts(text: str | None) -> tuple[Attempt, ...]:
    if not text or text == "[]":
        return ()
    one = _ONE_SUCCESS.fullmatch(text)
    if one is not None:  # what ``_attempts_text`` writes for one successful attempt
        return (Attempt(int(one[1]), int(one[2]), True),)
    return tuple(Attempt.from_json(a) for a in json.loads(text))


_CONFIG_TEXTS: dict[int, tuple[dict[str, Any], str]] = {}


def _config_text(config: dict[str, Any]) -> str:
    """The JSON of a step config. Steps share their config dicts (``shared_json``, ``_config``),
    so the text is kept by identity, with the dict held so that its id stays its own."""
    found = _CONFIG_TEXTS.get(id(config))
    if found is not None and found[0] is config:
        return found[1]
    text = json.dumps(config)
    if len(_CONFIG_TEXTS) < 1024:
        _CONFIG_TEXTS[id(config)] = (config, text)
    return text


def _attempts_text(attempts: tuple[Attempt, ...]) -> str:
    only = attempts[0] if len(attempts) == 1 else None
    if only is not None and only.success and only.end is not None and only.error_name is None:
        # The common case, one successful attempt, without building and encoding dicts.
        return f'[{{"start": {only.start}, "end": {only.end}, "success": true, "error": null}}]'
    return json.dumps([a.to_json() for a in attempts])


def step_values(record: StepRecord) -> dict[str, Any]:
    return {
        "name": record.name,
        "count": record.count,
        "type": record.type.value,
        "state": record.state.value,
        "seq": record.seq,
        "started_at": record.started_at,
        "ended_at": record.ended_at,
        "wake_at": record.wake_at,
        "config": None if record.config is None else _config_text(record.config),
        "attempts": _attempts_text(record.attempts),
        "output": record.output,
        "error_name": record.error_name,
        "error_message": record.error_message,
        "event_type": record.event_type,
    }


def encode_cursor(created_at: int, pk: int) -> str:
    return base64.urlsafe_b64encode(f"{created_at}:{pk}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, int]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created_at, pk = base64.urlsafe_b64decode(padded).decode().split(":")
        return int(created_at), int(pk)
    except (ValueError, UnicodeDecodeError):
        raise ValidationError(f"cursor {cursor!r} is not one this server issued") from None
