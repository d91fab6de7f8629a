"""``python -m bench.server SPEC``: the HTTP server of the HTTP workloads, in its own process.

Stepstone: ``create_app(engine, open_access=True)`` (what ``stepstone dev`` serves) on uvicorn,
with the worker in the same process and event loop when asked. DBOS: a thin FastAPI app on the
same uvicorn whose routes call ``DBOS.start_workflow_async`` and ``DBOS.send_async``.

Both get bench-only routes under ``/bench``: ``waiting/{id}`` answers once the instance waits
for its event, ``finished/{id}`` once its run ended (with the time, on the machine-wide
monotonic clock), ``stop`` shuts the server down. Prints ``{"port": N}`` once it listens.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from typing import Any

import uvicorn
from fastapi import Body, FastAPI

from bench.databases import RunDatabase

WAIT_LIMIT_S = 30.0


async def _serve(app: FastAPI) -> None:
    # host/port, not a socket of ours: uvicorn then sets TCP_NODELAY; with a passed socket,
    # Nagle's algorithm adds about 40 ms to every answer.
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", access_log=False, lifespan="off"
    )
    server = uvicorn.Server(config)

    @app.post("/bench/stop")
    async def stop() -> dict[str, bool]:
        server.should_exit = True
        return {"ok": True}

    serving = asyncio.create_task(server.serve(), name="uvicorn")
    while not server.started:
        if serving.done():
            serving.result()
            return
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    print(json.dumps({"port": port}), flush=True)
    await serving


async def serve_stepstone(db: RunDatabase, *, worker: bool, stored: int) -> None:
    from bench import bulk, stepstone_side
    from stepstone.api import create_app
    from stepstone.domain.status import InstanceStatus

    async with stepstone_side.harness(db, worker=worker) as h:
        if stored:
            deployed = h.deployed["bench-ten"]
            await asyncio.to_thread(
                bulk.store_instances,
                db,
                deployed.workflow.id,
                deployed.version.id,
                stored,
            )
        app = create_app(h.engine, open_access=True)
        pending: dict[str, asyncio.Future[float]] = {}
        workflow_id = h.deployed["bench-event"].workflow.id

        async def status(instance_id: str) -> InstanceStatus | None:
            found = await h.engine.store.get_instance(workflow_id, instance_id)
            return None if found is None else found.status

        @app.get("/bench/waiting/{instance_id}")
        async def waiting(instance_id: str) -> dict[str, Any]:
            async with asyncio.timeout(WAIT_LIMIT_S):
                # The store is the only witness of the waiting status: poll it, every ms.
                while await status(instance_id) is not InstanceStatus.WAITING:  # noqa: ASYNC110
                    await asyncio.sleep(0.001)
            pending[instance_id] = h.tracker.expect(instance_id)
            return {}

        @app.get("/bench/finished/{instance_id}")
        async def finished(instance_id: str) -> dict[str, Any]:
            async with asyncio.timeout(WAIT_LIMIT_S):
                ended = await pending.pop(instance_id)
                while True:
                    now = await status(instance_id)
                    if now is not None and now.is_terminal:
                        return {"ended_ms": ended, "status": now.value}
                    ended = await h.tracker.expect(instance_id)

        await _serve(app)


async def serve_dbos(db: RunDatabase) -> None:
    from dbos import DBOS

    from bench import dbos_side

    async with dbos_side.harness(db):
        app = FastAPI()
        ended: dict[str, asyncio.Future[float]] = {}

        @app.post("/dbos/event")
        async def start() -> dict[str, Any]:
            workflow_id, done = await dbos_side.start_event_workflow()
            ended[workflow_id] = done
            return {"id": workflow_id}

        @app.post("/dbos/events/{workflow_id}")
        async def send(workflow_id: str, body: Any = Body(None)) -> dict[str, Any]:  # noqa: B008
            await DBOS.send_async(workflow_id, body, topic="go")
            return {}

        @app.get("/bench/waiting/{workflow_id}")
        async def waiting(workflow_id: str) -> dict[str, Any]:
            reached = dbos_side.REACHED.get(workflow_id)
            async with asyncio.timeout(WAIT_LIMIT_S):
                if reached is not None:
                    await reached.wait()
                # The body has reached recv; let it look for the message and start waiting.
                await asyncio.sleep(0.005)
            return {}

        @app.get("/bench/finished/{workflow_id}")
        async def finished(workflow_id: str) -> dict[str, Any]:
            async with asyncio.timeout(WAIT_LIMIT_S):
                return {"ended_ms": await ended.pop(workflow_id), "status": "complete"}

        await _serve(app)


async def main(spec: dict[str, Any]) -> None:
    db = RunDatabase(**spec["db"])
    if spec["engine"] == "stepstone":
        await serve_stepstone(db, worker=spec["worker"], stored=spec.get("stored", 0))
    else:
        await serve_dbos(db)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(main(json.loads(sys.argv[1])))
