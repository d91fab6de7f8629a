"""The class a workflow extends, and the event its ``run`` receives."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, TypeVar, overload

from stepstone.domain.durations import Duration

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class WorkflowEvent:
    """What started the instance: its params (``payload``), when, and its id."""

    payload: Any
    timestamp: datetime
    instance_id: str


@dataclass(frozen=True, slots=True)
class ReceivedEvent:
    """An event delivered to ``wait_for_event``."""

    type: str
    payload: Any
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class StepContext:
    """Passed to a step callable that declares a ``ctx`` parameter."""

    step_name: str
    step_count: int
    attempt: int
    config: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class RollbackContext:
    """Passed to a rollback (compensation) callable."""

    step_name: str
    step_count: int
    output: Any
    error: BaseException | None
    config: Mapping[str, Any]


class WorkflowStep(ABC):
    """The durable primitives ``run`` is given. What each call did is committed before anything
    that could depend on it: the next step's function, a wait, the instance's end."""

    @overload
    def do(
        self,
        name: str,
        fn: Callable[..., Awaitable[T]] | Callable[..., T],
        /,
        *args: Any,
        retries: Mapping[str, Any] | None = None,
        timeout: Duration | None = None,
        sensitive: str | None = None,
        rollback: Callable[[RollbackContext], Any] | None = None,
        rollback_config: Mapping[str, Any] | None = None,
    ) -> Awaitable[T]: ...

    @overload
    def do(
        self,
        name: str | None = None,
        config: Mapping[str, Any] | None = None,
        /,
        *,
        retries: Mapping[str, Any] | None = None,
        timeout: Duration | None = None,
        sensitive: str | None = None,
        rollback: Callable[[RollbackContext], Any] | None = None,
        rollback_config: Mapping[str, Any] | None = None,
        concurrent: bool = False,
    ) -> Callable[[Callable[..., Any]], Callable[[], Awaitable[Any]]]: ...

    @abstractmethod
    def do(self, *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args)`` as a durable step, or decorate a function to be one.

        ``fn`` may be sync or async. It is retried per ``retries`` (default: 5 retries, 10 s
        delay, exponential backoff), each attempt bounded by ``timeout`` (default 10 minutes).
        Its JSON result (≤ 1 MiB) is committed, and returned without running on replay.
        ``rollback`` registers a compensation that runs if the instance later fails.
        """

    @abstractmethod
    async def sleep(self, name: str, duration: Duration) -> None:
        """Suspend for ``duration``; the instance holds no memory while it sleeps."""

    @abstractmethod
    async def sleep_until(self, name: str, when: datetime | int | float) -> None:
        """Suspend until ``when`` (an aware datetime, or epoch milliseconds)."""

    @abstractmethod
    async def wait_for_event(
        self, name: str, *, type: str, timeout: Duration | None = None
    ) -> ReceivedEvent:
        """Wait for the next event of ``type`` (default timeout 24 hours).

        Events sent before the wait are buffered and delivered in order, one event to one wait.
        Raises ``WaitForEventTimeoutError`` when none arrives in time.
        """


class WorkflowEntrypoint(ABC):
    """Extend this class and implement ``run``; its return value (JSON) is the output.

    Class attributes picked up on deploy:
        name: the workflow's name (default: the class name in kebab-case).
        schedules: cron expressions that start instances.
        limits: ``{"steps": N}`` to allow more (or fewer) than 10,000 steps per instance.
    """

    name: ClassVar[str | None] = None
    schedules: ClassVar[Sequence[str]] = ()
    limits: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, env: Mapping[str, Any] | None = None) -> None:
        self.env: Mapping[str, Any] = env or {}

    @abstractmethod
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        """The workflow's body."""
