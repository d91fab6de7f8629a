"""Jobs: Python functions that graph workflows' job steps run by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

JOB_MARK = "__stepstone_job__"


def job(name: str | None = None) -> Callable[[F], F]:
    """Register a function as a job, under ``name`` (default: the function's name).

    A graph workflow's step ``{"step_type": "job", "job_id": "<name>"}`` runs it, with the
    step's input (the trigger payload, the step's payload and its parents' outputs) as its one
    argument; what it returns (JSON) is the step's output. Deploying the script that defines it
    (``stepstone deploy jobs.py``) registers it for the tenant. Sync functions run in a thread.

    Example::

        from stepstone import job

        @job("send-receipt")
        async def send_receipt(data):
            ...
            return {"sent": True}
    """

    def mark(fn: F) -> F:
        setattr(fn, JOB_MARK, name or fn.__name__)
        return fn

    return mark
