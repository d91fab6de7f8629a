"""A process restart: a new store, engine, worker and loader on the same SQLite file.

The workflow is deployed from a file with ``deploy_path``, so the "new process" must import it
from the archive in the database; its steps append to a log file, which counts side effects
across processes the way a module-level counter cannot.
"""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from stepstone.domain.records import StepState
from stepstone.domain.status import InstanceStatus
from stepstone.engine import Engine
from stepstone.runtime.clock import FakeClock
from stepstone.storage import open_store
from stepstone.worker.worker import Worker, WorkerSettings
from tests.runtime.support import instance_of, output_of, status_of, steps_of

SOURCE = textwrap.dedent(
    """
    from stepstone import WorkflowEntrypoint


    def note(path, line):
        with open(path, "a") as log:
            log.write(line + "\\n")
        return line


    class Durable(WorkflowEntrypoint):
        async def run(self, event, step):
            log = event.payload["log"]
            await step.do("first", note, log, "first")
            await step.sleep("nap", "1 hour")
            await step.do("middle", note, log, "middle")
            got = await step.wait_for_event("go", type="go", timeout="1 day")
            await step.do("last", note, log, "last")
            return {"go": got.payload}
    """
)


@dataclass
class Process:
    """What one process of Stepstone holds: its own store, engine, loader and worker."""

    engine: Engine
    worker: Worker


@asynccontextmanager
async def process(url: str, clock: FakeClock) -> AsyncIterator[Process]:
    store = await open_store(url)
    try:
        engine = Engine(store, clock=clock)
        worker = Worker(
            store,
            clock=clock,
            loader=engine.loader,
            notifier=engine.notifier,
            settings=WorkerSettings(hold_ms=0),
        )
        yield Process(engine, worker)
    finally:
        await store.close()


async def test_sleep_and_wait_survive_restarts(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'restart.db'}"
    script = tmp_path / "durable_flow.py"
    script.write_text(SOURCE)
    log = tmp_path / "side-effects.log"
    clock = FakeClock()

    async with process(url, clock) as first:
        [deployed] = await first.engine.deploy_path(script)
        assert deployed.workflow.name == "durable"
        instance = await first.engine.create_instance("durable", params={"log": str(log)})
        await first.worker.run_until_idle(advance=False)
        assert await status_of(first.engine, "durable", instance.id) is InstanceStatus.WAITING
    assert log.read_text().splitlines() == ["first"]

    script.unlink()  # the next processes import the workflow from the database alone
    await clock.advance(3_600_000)
    async with process(url, clock) as second:
        await second.worker.run_until_idle(advance=False)
        assert await status_of(second.engine, "durable", instance.id) is InstanceStatus.WAITING
        assert log.read_text().splitlines() == ["first", "middle"]
        await second.engine.send_event("durable", instance.id, "go", {"by": "ops"})

    async with process(url, clock) as third:
        await third.worker.run_until_idle(advance=False)
        done = await instance_of(third.engine, "durable", instance.id)
        assert done.status is InstanceStatus.COMPLETE
        assert output_of(done) == {"go": {"by": "ops"}}
        steps = await steps_of(third.engine, "durable", instance.id)
        assert [s.name for s in steps] == ["first", "nap", "middle", "go", "last"]
        assert all(s.state is StepState.COMPLETE for s in steps if s.name != "nap")

    assert log.read_text().splitlines() == ["first", "middle", "last"]


async def test_a_new_process_resumes_a_retry_from_its_committed_attempts(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'retry.db'}"
    script = tmp_path / "retry_flow.py"
    script.write_text(
        textwrap.dedent(
            """
            from pathlib import Path
            from stepstone import WorkflowEntrypoint


            def attempt(path):
                log = Path(path)
                tries = len(log.read_text().splitlines()) if log.exists() else 0
                with log.open("a") as out:
                    out.write("try\\n")
                if tries < 2:
                    raise RuntimeError(f"try {tries + 1} failed")
                return tries + 1


            class RetryFlow(WorkflowEntrypoint):
                async def run(self, event, step):
                    return await step.do(
                        "attempt", attempt, event.payload,
                        retries={"limit": 5, "delay": "1 minute", "backoff": "constant"},
                    )
            """
        )
    )
    log = tmp_path / "tries.log"
    clock = FakeClock()

    async with process(url, clock) as first:
        await first.engine.deploy_path(script)
        instance = await first.engine.create_instance("retry-flow", params=str(log))
        await first.worker.run_until_idle(advance=False)
    script.unlink()

    for _ in range(2):
        await clock.advance(60_000)
        async with process(url, clock) as later:
            await later.worker.run_until_idle(advance=False)

    async with process(url, clock) as last:
        done = await instance_of(last.engine, "retry-flow", instance.id)
        assert done.status is InstanceStatus.COMPLETE
        assert output_of(done) == 3
        [record] = await steps_of(last.engine, "retry-flow", instance.id)
        assert [a.success for a in record.attempts] == [False, False, True]
    assert log.read_text().splitlines() == ["try"] * 3
