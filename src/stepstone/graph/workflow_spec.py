"""A Strait workflow's own fields (``POST /v1/workflows``, ``PATCH``): checked, with their
defaults, beside the steps' definition.

The SDK's helpers send fields the server document does not have (``environment_id``,
``max_attempts``, ``webhook_url``...) and spell ``cron_timezone`` as ``timezone``: the first
are accepted and kept, the second is read as its alias.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from croniter import croniter

from stepstone.domain.errors import WorkflowDefinitionError
from stepstone.graph.definition import GraphDefinition, parse_definition
from stepstone.graph.fields import StepFields
from stepstone.graph.vocabulary import MAX_SECONDS, MAX_STEPS

MAX_SLUG = 64
_SLUG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
VERSION_POLICIES = ("pin", "latest", "minor")
_KEPT = frozenset(
    {"environment_id", "max_attempts", "retry_strategy", "webhook_url", "webhook_secret"}
)
"""Fields the SDK's helpers send that have no effect here: kept, and shown back."""
_IGNORED = frozenset({"$schema", "backwards_compatible", "breaking_change", "id", "version"})
_FIELDS = (
    "project_id",
    "name",
    "slug",
    "description",
    "enabled",
    "steps",
    "tags",
    "timeout_secs",
    "max_concurrent_runs",
    "max_parallel_steps",
    "cron",
    "cron_timezone",
    "timezone",
    "skip_if_running",
    "version_policy",
)


@dataclass(frozen=True, slots=True)
class WorkflowSpec:
    """What a workflow is besides its steps, in Strait's field names."""

    name: str
    slug: str
    description: str | None = None
    enabled: bool = True
    tags: dict[str, str] = field(default_factory=dict)
    timeout_secs: int | None = None
    max_concurrent_runs: int | None = None
    max_parallel_steps: int | None = None
    cron: str | None = None
    cron_timezone: str | None = None
    skip_if_running: bool = False
    version_policy: str = "pin"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WorkflowSpec:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def parse_workflow(body: Any) -> tuple[WorkflowSpec, GraphDefinition]:
    """A new workflow: its fields and its steps (``WorkflowDefinitionError`` naming what is
    wrong)."""
    f = _fields(body)
    spec = WorkflowSpec(
        name=f.need_text("name", "on a workflow"),
        slug=_slug(f.need_text("slug", "on a workflow (it names the workflow in URLs)")),
        **_settings(f, body),
    )
    return spec, parse_definition(body)


def update_workflow(
    spec: WorkflowSpec, definition: GraphDefinition, body: Any
) -> tuple[WorkflowSpec, GraphDefinition]:
    """``spec`` with ``body``'s fields (a PATCH), and the definition of the new version every
    update makes: ``body``'s steps, or the current ones with the updated limits."""
    f = _fields(body)
    changes: dict[str, Any] = {
        k: v for k, v in _settings(f, body, partial=True).items() if v is not None
    }
    if f.text("name") is not None:
        changes["name"] = f.text("name")
    if f.text("slug") is not None:
        changes["slug"] = _slug(f.need_text("slug", ""))
    updated = replace(spec, **changes)
    if body.get("steps") is None:
        return updated, _with_limits(definition, updated)
    return updated, parse_definition(
        {
            "steps": body["steps"],
            "max_parallel_steps": updated.max_parallel_steps,
            "timeout_secs": updated.timeout_secs,
        }
    )


def _with_limits(definition: GraphDefinition, spec: WorkflowSpec) -> GraphDefinition:
    return GraphDefinition(
        steps=definition.steps,
        max_parallel_steps=spec.max_parallel_steps,
        timeout_secs=spec.timeout_secs,
    )


def _fields(body: Any) -> StepFields:
    if not isinstance(body, Mapping):
        raise WorkflowDefinitionError("a workflow is a JSON object with a name, slug and steps")
    f = StepFields(body, "workflow")
    f.refuse_unknown(_FIELDS + tuple(_KEPT), _IGNORED, {"timezone_name": "cron_timezone"})
    return f


def _settings(f: StepFields, body: Mapping[str, Any], *, partial: bool = False) -> dict[str, Any]:
    tags = body.get("tags")
    if tags is not None and (
        not isinstance(tags, Mapping)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items())
    ):
        raise f.fail("tags must be an object of strings")
    cron = f.text("cron")
    if cron is not None and not croniter.is_valid(cron):
        raise f.fail(f"cron {cron!r} is not a cron expression (five fields, like '*/5 * * * *')")
    policy = f.text("version_policy")
    if policy is not None and policy not in VERSION_POLICIES:
        raise f.fail(f"unknown version_policy {policy!r}; use one of {', '.join(VERSION_POLICIES)}")
    settings: dict[str, Any] = {
        "description": f.text("description"),
        "enabled": _flag(f, "enabled"),
        "tags": None if tags is None else dict(tags),
        "timeout_secs": f.whole("timeout_secs", low=1, high=MAX_SECONDS),
        "max_concurrent_runs": f.whole("max_concurrent_runs", low=1, high=1_000_000),
        "max_parallel_steps": f.whole("max_parallel_steps", low=1, high=MAX_STEPS),
        "cron": cron,
        "cron_timezone": f.text("cron_timezone", f.either("cron_timezone", "timezone")),
        "skip_if_running": _flag(f, "skip_if_running"),
        "version_policy": policy,
    }
    extra = {k: body[k] for k in _KEPT if body.get(k) is not None}
    if extra:
        settings["extra"] = extra
    if partial:
        return settings
    return {k: v for k, v in settings.items() if v is not None}


def _flag(f: StepFields, name: str) -> bool | None:
    value = f.raw.get(name)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise f.fail(f"{name} must be true or false, not {value!r}")
    return value


def _slug(value: str) -> str:
    if len(value) > MAX_SLUG or not _SLUG.fullmatch(value):
        raise WorkflowDefinitionError(
            f"workflow: slug {value[:80]!r} must be 1 to {MAX_SLUG} letters, digits, '.', '-' "
            "or '_', starting with a letter or digit"
        )
    return value
