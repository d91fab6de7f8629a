"""How a child run's end reaches its parent: an event, delivered in the child's last commit."""

from __future__ import annotations

import json
from typing import Any


def child_event_type(child_id: str) -> str:
    """The event type a child run's end is delivered to its parent as."""
    return f"child:{child_id}"


def child_outcome(
    status: str, output: str | None, error_name: str | None, error_message: str | None
) -> str:
    """The event's payload (JSON text): how the child ended, with its output or error."""
    error = None if error_name is None else {"name": error_name, "message": error_message or ""}
    value: Any = None if output is None else json.loads(output)
    return json.dumps({"status": status, "output": value, "error": error})
