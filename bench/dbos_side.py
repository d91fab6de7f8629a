"""The peer, DBOS Transact, in the bench's process, with the same workflow shapes and the same
durability: on SQLite the same pragmas as Stepstone (WAL and the chosen synchronous level; by
default DBOS leaves SQLite in rollback-journal mode with synchronous=FULL), on PostgreSQL the
server's synchronous_commit, as for Stepstone.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import sqlalchemy as sa
from dbos import DBOS, DBOSConfig, SetWorkflowID

from bench.databases import RunDatabase
from bench.flows import STEPS
from bench.probes import RssSampler, now_ms, rss_mb, timer_figures
from bench.stats import latency

REACHED: dict[str, asyncio.Event] = {}
"""Instance id -> set when its body reaches the wait for the event (bench-only side channel)."""
_WATCHERS: set[asyncio.Task[None]] = set()


@DBOS.step()
async def noop() -> None:
    return None


@DBOS.step()
async def stamp() -> float:
    return now_ms()


@DBOS.workflow()
async def bench_ten() -> int:
    for _ in range(STEPS):
        await noop()
    return STEPS


@DBOS.workflow()
async def bench_event() -> float:
    reached = REACHED.get(DBOS.workflow_id or "")
    if reached is not None:
        reached.set()
    await DBOS.recv_async("go", timeout_seconds=3600)
    return await stamp()


@DBOS.workflow()
async def bench_sleep(ms: int) -> dict[str, float]:
    before = await stamp()
    await DBOS.sleep_async(ms / 1000)
    after = await stamp()
    return {"before": before, "after": after, "ms": ms}


def sqlite_engine(url: str, synchronous: str) -> sa.Engine:
    """DBOS's own SQLite engine settings (pool, IMMEDIATE transactions, busy timeout, foreign
    keys) plus Stepstone's journal pragmas, so both engines pay for the same durability."""
    engine = sa.create_engine(
        url, pool_size=20, max_overflow=0, pool_timeout=30, pool_pre_ping=True
    )

    @sa.event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = "IMMEDIATE"
        dbapi_connection.execute("PRAGMA journal_mode=WAL")
        dbapi_connection.execute(f"PRAGMA synchronous={synchronous}")
        dbapi_connection.execute("PRAGMA busy_timeout=30000")
        dbapi_connection.execute("PRAGMA foreign_keys=ON")

    return engine


@asynccontextmanager
async def harness(db: RunDatabase) -> AsyncIterator[None]:
    config: DBOSConfig = {
        "name": "stepstone-bench",
        "system_database_url": db.url,
        "log_level": "WARNING",
    }
    if db.kind == "sqlite":
        config["system_database_engine"] = sqlite_engine(db.url, db.synchronous)
    DBOS(config=config)
    DBOS.launch()
    try:
        yield
    finally:
        DBOS.destroy()


async def _one() -> float:
    start = now_ms()
    handle = await DBOS.start_workflow_async(bench_ten)
    await handle.get_result()
    return now_ms() - start


async def sequential(n: int) -> dict[str, float]:
    await _one()  # warm-up, as on the Stepstone side
    samples = []
    start = now_ms()
    for _ in range(n):
        samples.append(await _one())
    elapsed_s = (now_ms() - start) / 1000
    return {
        "workflows_per_s": n / elapsed_s,
        "steps_per_s": n * STEPS / elapsed_s,
        **latency("", samples),
    }


async def concurrent(m: int) -> dict[str, float]:
    await _one()
    start = now_ms()
    handles = await asyncio.gather(*(DBOS.start_workflow_async(bench_ten) for _ in range(m)))
    results = await asyncio.gather(*(h.get_result() for h in handles))
    drain_s = (now_ms() - start) / 1000
    if results != [STEPS] * m:
        raise RuntimeError("DBOS workflows returned something unexpected")
    return {
        "steps_per_s": m * STEPS / drain_s,
        "workflows_per_s": m / drain_s,
        "drain_s": drain_s,
    }


async def timers(k: int, sleep_ms: int) -> dict[str, float]:
    base = rss_mb()
    sampler = RssSampler()
    sampler.start()
    start = now_ms()
    handles = await asyncio.gather(
        *(DBOS.start_workflow_async(bench_sleep, sleep_ms) for _ in range(k))
    )
    outputs = await asyncio.gather(*(h.get_result() for h in handles))
    elapsed_s = (now_ms() - start) / 1000
    await sampler.stop()
    return timer_figures(list(outputs), sampler, base, elapsed_s)


async def start_event_workflow() -> tuple[str, asyncio.Future[float]]:
    """Start a ``bench_event`` workflow; the future resolves (with the time) when it ends."""
    workflow_id = f"event-{uuid.uuid4().hex}"
    REACHED[workflow_id] = asyncio.Event()
    with SetWorkflowID(workflow_id):
        handle = await DBOS.start_workflow_async(bench_event)
    ended: asyncio.Future[float] = asyncio.get_running_loop().create_future()

    async def watch() -> None:
        await handle.get_result()
        ended.set_result(now_ms())

    ended.add_done_callback(lambda _f: REACHED.pop(workflow_id, None))
    watcher = asyncio.get_running_loop().create_task(watch(), name=f"watch {workflow_id}")
    _WATCHERS.add(watcher)
    watcher.add_done_callback(_WATCHERS.discard)
    return workflow_id, ended
