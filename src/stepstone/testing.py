"""Test your workflows in-process: sleeps skipped, steps mocked, events injected, history returned.

    from stepstone.testing import run_workflow

    async def test_checkout() -> None:
        result = await run_workflow(
            Checkout,
            params={"id": 7},
            events=[("approved", {"user": "ada"})],
            mocks={"charge": {"charge_id": "ch_test"}},
        )
        assert result.status == "complete"
        assert result.step("charge").output == {"charge_id": "ch_test"}

The engine under test is the real one, on a SQLite file in a temporary folder, with a clock
that jumps to the next timer instead of sleeping.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from stepstone.domain.durations import Duration, to_ms
from stepstone.domain.records import StepRecord
from stepstone.engine import Engine
from stepstone.runtime.clock import FakeClock
from stepstone.sdk.entrypoint import WorkflowEntrypoint
from stepstone.storage import open_store
from stepstone.storage.sql import SqlStore
from stepstone.worker.worker import Worker, WorkerSettings

__all__ = ["StepResult", "WorkflowResult", "WorkflowTestEnv", "run_workflow"]


@dataclass(frozen=True, slots=True)
class StepResult:
    name: str
    count: int
    type: str
    state: str
    output: Any
    attempts: int
    error: str | None

    @classmethod
    def of(cls, record: StepRecord) -> StepResult:
        return cls(
            name=record.name,
            count=record.count,
            type=record.type.value,
            state=record.state.value,
            output=None if record.output is None else json.loads(record.output),
            attempts=len(record.attempts),
            error=None
            if record.error_name is None
            else f"{record.error_name}: {record.error_message}",
        )


@dataclass(frozen=True, slots=True)
class WorkflowResult:
    instance_id: str
    status: str
    output: Any
    error: str | None
    steps: list[StepResult]

    def step(self, name: str, count: int = 1) -> StepResult:
        for s in self.steps:
            if s.name == name and s.count == count:
                return s
        raise KeyError(
            f"no step {name!r} (occurrence {count}); steps: {[s.name for s in self.steps]}"
        )


class WorkflowTestEnv:
    """A private engine for one test: deploy classes, start instances, move time, inspect."""

    def __init__(
        self, *, mocks: Mapping[str, Any] | None = None, env: Mapping[str, Any] | None = None
    ) -> None:
        self._mocks = dict(mocks or {})
        self._env = dict(env or {})
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._store: SqlStore | None = None
        self._names: dict[type[WorkflowEntrypoint], str] = {}
        self.clock = FakeClock()
        self.engine: Engine
        self.worker: Worker

    async def __aenter__(self) -> WorkflowTestEnv:
        self._dir = tempfile.TemporaryDirectory(prefix="stepstone-test-")
        self._store = await open_store(f"sqlite:///{Path(self._dir.name) / 'test.db'}")
        self.engine = Engine(self._store, clock=self.clock)
        self.worker = Worker(
            self._store,
            clock=self.clock,
            loader=self.engine.loader,
            notifier=self.engine.notifier,
            settings=WorkerSettings(hold_ms=0),
            env=self._env,
            mocks=self._mocks,
            worker_id="stepstone-testing",
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._store is not None:
            await self._store.close()
        if self._dir is not None:
            self._dir.cleanup()

    async def start(
        self,
        workflow: type[WorkflowEntrypoint],
        *,
        params: Any = None,
        instance_id: str | None = None,
    ) -> str:
        """Deploy ``workflow`` (once) and start an instance; returns its id."""
        name = await self._name(workflow)
        instance = await self.engine.create_instance(name, params=params, instance_id=instance_id)
        return instance.id

    async def send_event(
        self, workflow: type[WorkflowEntrypoint], instance_id: str, type: str, payload: Any = None
    ) -> None:
        await self.engine.send_event(await self._name(workflow), instance_id, type, payload)

    async def run(self, *, skip_sleeps: bool = True) -> None:
        """Drive every instance until all are finished or waiting for an event.

        With ``skip_sleeps`` the clock jumps over sleeps and retry delays, and also over
        wait timeouts when nothing else is left: send events before calling this.
        """
        await self.worker.run_until_idle(advance=skip_sleeps)

    async def advance(self, duration: Duration) -> None:
        """Move the clock forward, then drive what became ready."""
        await self.clock.advance(to_ms(duration))
        await self.worker.run_until_idle(advance=False)

    async def result(self, workflow: type[WorkflowEntrypoint], instance_id: str) -> WorkflowResult:
        view = await self.engine.get_instance(await self._name(workflow), instance_id)
        i = view.instance
        return WorkflowResult(
            instance_id=i.id,
            status=i.status.value,
            output=None if i.output is None else json.loads(i.output),
            error=None if i.error_name is None else f"{i.error_name}: {i.error_message}",
            steps=[StepResult.of(s) for s in view.steps],
        )

    async def _name(self, workflow: type[WorkflowEntrypoint]) -> str:
        if workflow not in self._names:
            deployed = await self.engine.deploy_class(workflow)
            self._names[workflow] = deployed.workflow.name
        return self._names[workflow]


async def run_workflow(
    workflow: type[WorkflowEntrypoint],
    *,
    params: Any = None,
    events: Sequence[tuple[str, Any]] = (),
    mocks: Mapping[str, Any] | None = None,
    env: Mapping[str, Any] | None = None,
    skip_sleeps: bool = True,
) -> WorkflowResult:
    """Run one instance of ``workflow`` to its end and return its status, output and steps.

    ``events`` are sent up front and buffered until the waits take them, in order. ``mocks``
    maps step names to the result to use instead of running the step (an exception instance
    makes every attempt raise it).
    """
    async with WorkflowTestEnv(mocks=mocks, env=env) as test_env:
        instance_id = await test_env.start(workflow, params=params)
        for event_type, payload in events:
            await test_env.send_event(workflow, instance_id, event_type, payload)
        await test_env.run(skip_sleeps=skip_sleeps)
        return await test_env.result(workflow, instance_id)
