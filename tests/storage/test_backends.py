"""The same workflow on both backends: SQLite files and a real PostgreSQL server."""

from __future__ import annotations

import pytest

from stepstone.domain.status import InstanceStatus
from stepstone.engine import Engine
from stepstone.runtime.clock import FakeClock
from stepstone.storage import open_store
from stepstone.worker.worker import Worker, WorkerSettings
from tests.runtime.test_smoke import Smoke


@pytest.mark.postgres
async def test_smoke_workflow_on_postgres(postgres_url: str, clock: FakeClock) -> None:
    store = await open_store(postgres_url)
    try:
        engine = Engine(store, clock=clock)
        worker = Worker(
            store, clock=clock, loader=engine.loader, settings=WorkerSettings(hold_ms=0)
        )
        await engine.deploy_class(Smoke)
        instance = await engine.create_instance("smoke", params={"id": 3})
        await engine.send_event("smoke", instance.id, "ok", "pg")
        await worker.run_until_idle()
        view = await engine.get_instance("smoke", instance.id)
        assert view.instance.status is InstanceStatus.COMPLETE
        assert view.instance.output == '{"id":3,"by":"pg"}'
        with pytest.raises(Exception, match="already exists"):
            await engine.create_instance("smoke", instance_id=instance.id)
    finally:
        await store.close()
