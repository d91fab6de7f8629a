"""One Stepstone process: HTTP server, worker, or both, on one event loop."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from enum import StrEnum
from pathlib import Path

import uvicorn

from stepstone.api import create_app
from stepstone.domain.errors import StepstoneError
from stepstone.engine import Engine
from stepstone.engine.engine import Deployed
from stepstone.storage import open_store
from stepstone.worker.worker import Worker, WorkerSettings

log = logging.getLogger(__name__)


class Role(StrEnum):
    ALL = "all"
    API = "api"
    WORKER = "worker"


async def run_process(
    url: str | None,
    *,
    role: Role = Role.ALL,
    host: str = "127.0.0.1",
    port: int = 8787,
    deploy: Sequence[Path] = (),
    watch: bool = False,
    settings: WorkerSettings | None = None,
    open_access: bool = False,
    on_deployed: Callable[[list[Deployed]], None] | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM; then stop claiming, hand leases back and exit."""
    settings = settings or WorkerSettings.from_env(os.environ)
    store = await open_store(url)
    engine = Engine(store)
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    try:
        for path in deploy:
            deployed = await engine.deploy_path(path)
            if on_deployed:
                on_deployed(deployed)
        if role in (Role.ALL, Role.WORKER):
            worker = Worker(
                store, loader=engine.loader, notifier=engine.notifier, settings=settings
            )
            tasks.append(asyncio.create_task(worker.run(stop), name="worker"))
        if role in (Role.ALL, Role.API):
            config = uvicorn.Config(
                create_app(engine, open_access=open_access),
                host=host,
                port=port,
                log_level="warning",
                lifespan="off",
            )
            server = _Server(config)
            tasks.append(asyncio.create_task(_serve(server, stop), name="http"))
        if watch and deploy:
            tasks.append(asyncio.create_task(_watch(engine, deploy, on_deployed), name="watch"))
        if role is not Role.WORKER and not open_access and not await store.list_keys(None):
            log.warning(
                "no API keys exist yet, so every API request will answer 401; create one with "
                "`stepstone keys create --tenant NAME --scopes admin`"
            )
        _install_signal_handlers(stop)
        if on_ready:
            where = f"http://{host}:{port}" if role is not Role.WORKER else "worker only"
            on_ready(f"{where} (database: {store.url})")
        stopper = asyncio.create_task(stop.wait(), name="stop")
        done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
        stop.set()
        for task in done:
            if task is not stopper and not task.cancelled() and task.exception():
                raise task.exception()  # type: ignore[misc]
    finally:
        stop.set()
        for task in tasks:
            if task.get_name() == "watch":
                task.cancel()
        for task in tasks:
            with suppress(asyncio.CancelledError):
                await task
        await store.close()


class _Server(uvicorn.Server):
    """Uvicorn without its own signal handling: this process stops the server and worker."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _serve(server: uvicorn.Server, stop: asyncio.Event) -> None:
    serving = asyncio.create_task(server.serve())
    await stop.wait()
    server.should_exit = True
    await serving


def _install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)


async def _watch(
    engine: Engine, paths: Sequence[Path], on_deployed: Callable[[list[Deployed]], None] | None
) -> None:
    """Redeploy a path when a Python file under it changes."""
    from watchfiles import awatch

    async for changes in awatch(*paths):
        changed = {Path(p) for _, p in changes if p.endswith(".py")}
        for path in paths:
            if any(c == path.resolve() or path.resolve() in c.parents for c in changed):
                try:
                    deployed = await engine.deploy_path(path)
                except StepstoneError as exc:
                    log.error("redeploying %s failed: %s", path, exc.message)
                    continue
                if on_deployed:
                    on_deployed(deployed)
