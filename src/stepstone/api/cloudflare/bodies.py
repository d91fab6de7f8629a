"""Request bodies as the official SDK sends them; unknown fields are ignored, as Cloudflare does."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

Duration = int | float | str


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class Retention(_Body):
    success_retention: Duration | None = None
    error_retention: Duration | None = None


class Limits(_Body):
    steps: int | None = Field(default=None, ge=1)


class Concurrency(_Body):
    limit: int | None = Field(default=None, ge=1)


class Schedule(_Body):
    cron: str


def _no_nul(value: str) -> str:
    # PostgreSQL text cannot hold NUL: a name with one is a bad request, not a database error.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


Name = Annotated[str, Field(min_length=1, max_length=255), AfterValidator(_no_nul)]


class WorkflowPut(_Body):
    class_name: Name
    script_name: Name
    limits: Limits | None = None
    concurrency: Concurrency | None = None
    default_retention: Retention | None = None
    schedules: list[Schedule] | None = None


class InstanceCreate(_Body):
    instance_id: str | None = None
    params: Any = None
    instance_retention: Retention | None = None

    def payload(self) -> Any:
        """``params`` is JSON-encoded text per the SDK; a value that is not JSON stays as is."""
        if isinstance(self.params, str):
            try:
                return json.loads(self.params)
            except json.JSONDecodeError:
                return self.params
        return self.params


class StepFrom(_Body):
    name: str = Field(min_length=1)
    count: int = Field(default=1, ge=1)
    type: Literal["do", "step", "sleep", "waitForEvent"] | None = None


class StatusChange(_Body):
    status: str
    rollback: bool = False
    from_: StepFrom | None = Field(default=None, alias="from")
