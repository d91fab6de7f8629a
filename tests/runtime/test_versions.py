"""An instance stays on the version it started on; a redeploy changes only new instances."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from stepstone.domain.errors import WorkflowDefinitionError
from stepstone.domain.status import InstanceStatus
from stepstone.engine import Engine
from stepstone.runtime.clock import FakeClock
from stepstone.runtime.loader import VersionLoader
from stepstone.worker.worker import Worker
from tests.runtime.support import instance_of, output_of, status_of


def source(greeting: str) -> str:
    return textwrap.dedent(
        f"""
        from stepstone import WorkflowEntrypoint

        GREETING = {greeting!r}


        class Greeter(WorkflowEntrypoint):
            async def run(self, event, step):
                before = await step.do("greet", lambda: GREETING)
                await step.sleep("wait a bit", "1 hour")
                after = await step.do("greet again", lambda: GREETING)
                return [before, after]
        """
    )


async def test_a_running_instance_keeps_its_version_across_a_redeploy(
    engine: Engine, worker: Worker, clock: FakeClock, tmp_path: Path
) -> None:
    script = tmp_path / "greeter.py"
    script.write_text(source("hello from v1"))
    [v1] = await engine.deploy_path(script)
    old = await engine.create_instance("greeter")
    await worker.run_until_idle(advance=False)
    assert await status_of(engine, "greeter", old.id) is InstanceStatus.WAITING

    script.write_text(source("hello from v2"))
    [v2] = await engine.deploy_path(script)
    assert (v1.version.number, v2.version.number) == (1, 2)
    assert v1.version.source_hash != v2.version.source_hash
    assert (await engine.get_workflow("greeter")).current_version_id == v2.version.id
    new = await engine.create_instance("greeter")
    assert new.version_id == v2.version.id

    await clock.advance(3_600_000)
    await worker.run_until_idle()

    finished_old = await instance_of(engine, "greeter", old.id)
    assert finished_old.version_id == v1.version.id
    assert output_of(finished_old) == ["hello from v1", "hello from v1"]
    assert output_of(await instance_of(engine, "greeter", new.id)) == [
        "hello from v2",
        "hello from v2",
    ]


async def test_a_new_loader_reads_each_version_from_its_own_archive(
    engine: Engine, tmp_path: Path
) -> None:
    script = tmp_path / "greeter.py"
    script.write_text(source("one"))
    [v1] = await engine.deploy_path(script)
    script.write_text(source("two"))
    [v2] = await engine.deploy_path(script)
    script.unlink()

    loader = VersionLoader()  # what another process starts with: nothing pinned
    first = loader.load(v1.version)
    second = loader.load(v2.version)

    assert first.__module__ == second.__module__ == "greeter"
    assert first.run.__globals__["GREETING"] == "one"
    assert second.run.__globals__["GREETING"] == "two"
    assert "greeter" not in sys.modules  # two versions of one module never collide
    assert loader.load(v1.version) is first  # imported once per process and version


async def test_a_folder_of_modules_deploys_as_one_version(
    engine: Engine, worker: Worker, tmp_path: Path
) -> None:
    folder = tmp_path / "shop"
    folder.mkdir()
    (folder / "pricing.py").write_text("def price(n):\n    return n * 3\n")
    (folder / "flow.py").write_text(
        textwrap.dedent(
            """
            from pricing import price
            from stepstone import WorkflowEntrypoint


            class Checkout(WorkflowEntrypoint):
                async def run(self, event, step):
                    return await step.do("price", price, event.payload)
            """
        )
    )

    [deployed] = await engine.deploy_path(folder)
    assert deployed.version.module == "flow"
    instance = await engine.create_instance("checkout", params=7)
    await worker.run_until_idle()

    assert output_of(await instance_of(engine, "checkout", instance.id)) == 21


async def test_a_script_without_a_workflow_is_refused(engine: Engine, tmp_path: Path) -> None:
    script = tmp_path / "nothing.py"
    script.write_text("X = 1\n")

    with pytest.raises(WorkflowDefinitionError, match="defines no WorkflowEntrypoint subclass"):
        await engine.deploy_path(script)


async def test_a_sync_run_is_refused_at_deploy(engine: Engine, tmp_path: Path) -> None:
    script = tmp_path / "sync_run.py"
    script.write_text(
        "from stepstone import WorkflowEntrypoint\n\n"
        "class SyncRun(WorkflowEntrypoint):\n"
        "    def run(self, event, step):\n"
        "        return 1\n"
    )

    with pytest.raises(WorkflowDefinitionError, match="must be 'async def'"):
        await engine.deploy_path(script)
