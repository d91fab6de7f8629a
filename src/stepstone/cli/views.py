"""How instances look in a terminal: Rich tables, a live view, and plain JSON."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from stepstone.domain import jsonvalue
from stepstone.domain.records import ApiKey, Instance, StepRecord, StepState
from stepstone.domain.status import InstanceStatus
from stepstone.engine import DEFAULT_TENANT, Engine, InstanceView

_STATUS_STYLE = {
    InstanceStatus.COMPLETE: "green",
    InstanceStatus.ERRORED: "red",
    InstanceStatus.TERMINATED: "red",
    InstanceStatus.RUNNING: "cyan",
    InstanceStatus.WAITING: "yellow",
    InstanceStatus.PAUSED: "magenta",
}
_REDACTED = "[REDACTED]"


def _time(ms: int | None) -> str:
    if ms is None:
        return ""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _iso(ms: int | None) -> str | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat()


def _status(status: InstanceStatus) -> str:
    style = _STATUS_STYLE.get(status, "white")
    return f"[{style}]{status.value}[/{style}]"


def instances_table(items: Sequence[Instance]) -> Table:
    table = Table("id", "status", "created", "ended", "trigger")
    for i in items:
        table.add_row(
            i.id, _status(i.status), _time(i.created_at), _time(i.ended_at), i.trigger_source.value
        )
    return table


def _step_output(step: StepRecord) -> str:
    if step.config and step.config.get("sensitive") == "output":
        return _REDACTED
    text = step.output or ""
    return text if len(text) <= 60 else text[:57] + "..."


def steps_table(steps: Sequence[StepRecord]) -> Table:
    table = Table("#", "step", "type", "state", "attempts", "output / error")
    for s in steps:
        detail = (
            _step_output(s)
            if s.state is StepState.COMPLETE
            else (f"[red]{s.error_name}: {s.error_message}[/red]" if s.error_name else "")
        )
        if s.state is StepState.WAITING and s.wake_at:
            detail = f"until {_time(s.wake_at)}"
        table.add_row(
            str(s.seq),
            f"{s.name}" + (f" #{s.count}" if s.count > 1 else ""),
            s.type.value,
            s.state.value,
            str(len(s.attempts) or ""),
            detail,
        )
    return table


def instance_panel(view: InstanceView) -> Group:
    i = view.instance
    lines = [
        f"[bold]{view.workflow.name}[/bold] / {i.id}: {_status(i.status)}",
        f"params: {i.params}",
    ]
    if i.output is not None:
        lines.append(f"output: {i.output}")
    if i.error_name:
        lines.append(f"[red]error: {i.error_name}: {i.error_message}[/red]")
    if i.rollback_outcome:
        lines.append(
            f"rollback: {i.rollback_outcome}"
            + (
                f" ({i.rollback_error_name}: {i.rollback_error_message})"
                if i.rollback_error_name
                else ""
            )
        )
    lines.append(
        f"created {_time(i.created_at)}  started {_time(i.started_at)}  ended {_time(i.ended_at)}"
    )
    return Group(Panel("\n".join(lines)), steps_table(view.steps))


def instance_json(i: Instance) -> dict[str, Any]:
    return {
        "id": i.id,
        "status": i.status.value,
        "version_id": i.version_id,
        "params": jsonvalue.decode(i.params),
        "output": jsonvalue.decode(i.output),
        "error": None
        if i.error_name is None
        else {"name": i.error_name, "message": i.error_message},
        "trigger": i.trigger_source.value,
        "created_at": _iso(i.created_at),
        "started_at": _iso(i.started_at),
        "ended_at": _iso(i.ended_at),
    }


def view_json(view: InstanceView) -> dict[str, Any]:
    data = instance_json(view.instance)
    data["steps"] = [
        {
            "name": s.name,
            "count": s.count,
            "type": s.type.value,
            "state": s.state.value,
            "attempts": [a.to_json() for a in s.attempts],
            "output": _REDACTED if _step_output(s) == _REDACTED else jsonvalue.decode(s.output),
            "error": None
            if s.error_name is None
            else {"name": s.error_name, "message": s.error_message},
        }
        for s in view.steps
    ]
    return data


async def follow(
    engine: Engine,
    name: str,
    instance_id: str,
    console: Console,
    *,
    tenant: str = DEFAULT_TENANT,
) -> InstanceStatus:
    """Show the instance live until it ends; return its final status."""
    hinted = False
    waited = 0.0
    with Live(console=console, refresh_per_second=8, transient=False) as live:
        while True:
            view = await engine.get_instance(name, instance_id, tenant=tenant)
            live.update(instance_panel(view))
            status = view.instance.status
            if status.is_terminal:
                return status
            if status is InstanceStatus.QUEUED and waited > 5 and not hinted:
                console.print(
                    "[yellow]still queued: is a worker running? "
                    "(stepstone serve, or stepstone worker)[/yellow]"
                )
                hinted = True
            await asyncio.sleep(0.2)
            waited += 0.2


def keys_table(keys: Sequence[ApiKey]) -> Table:
    """Keys as operators see them: never a secret or a hash (the records hold neither)."""
    table = Table("id", "tenant", "name", "owner", "scopes", "created", "revoked")
    for k in keys:
        table.add_row(
            k.id,
            k.tenant,
            escape(k.name),
            escape(k.owner or ""),
            ", ".join(k.scopes),
            _time(k.created_at),
            _time(k.revoked_at),
        )
    return table


def key_json(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "tenant": key.tenant,
        "name": key.name,
        "owner": key.owner,
        "scopes": list(key.scopes),
        "created_at": _iso(key.created_at),
        "revoked_at": _iso(key.revoked_at),
    }
