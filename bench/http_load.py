"""The HTTP workloads' client side: a server process of ``bench.server``, and requests."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.config import Sizes
from bench.probes import now_ms
from bench.stats import latency, percentile

ROOT = Path(__file__).resolve().parents[1]
ACCOUNT = "/client/v4/accounts/bench/workflows"


@dataclass(frozen=True, slots=True)
class Server:
    url: str
    pid: int


@asynccontextmanager
async def server_process(spec: dict[str, Any], start_timeout_s: float) -> AsyncIterator[Server]:
    """Start ``python -m bench.server``, wait until it listens, stop it afterwards."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), *sys.path]))}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.server",
        json.dumps(spec),
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), start_timeout_s)
        if not line:
            raise RuntimeError(f"the bench server exited with {await proc.wait()} before serving")
        port = json.loads(line)["port"]
        yield Server(f"http://127.0.0.1:{port}", proc.pid)
    finally:
        if proc.returncode is None:
            with suppress(Exception):
                async with httpx.AsyncClient() as client:
                    await client.post(f"http://127.0.0.1:{port}/bench/stop", timeout=5)
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()


def _checked(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        raise RuntimeError(
            f"{response.request.url} answered {response.status_code}: {response.text}"
        )
    return response.json()


async def _drive(
    calls: Sequence[Callable[[], Awaitable[httpx.Response]]], in_flight: int
) -> tuple[list[float], float]:
    """Run ``calls`` with ``in_flight`` at once; per-call latencies (ms) and elapsed seconds."""
    queue = list(reversed(calls))
    samples: list[float] = []

    async def client_loop() -> None:
        while queue:
            call = queue.pop()
            start = now_ms()
            _checked(await call())
            samples.append(now_ms() - start)

    start = time.perf_counter()
    await asyncio.gather(*(client_loop() for _ in range(in_flight)))
    return samples, time.perf_counter() - start


async def http_create(server: Server, sizes: Sizes) -> dict[str, float]:
    """Batch creates (``sizes.batch`` per request) and single creates, no worker running."""
    path = f"{ACCOUNT}/bench-ten/instances"
    limits = httpx.Limits(max_connections=sizes.http_clients)
    async with httpx.AsyncClient(base_url=server.url, timeout=120, limits=limits) as client:
        body = [{"params": {"n": j}} for j in range(sizes.batch)]
        _checked(await client.post(f"{path}/batch", json=body))  # warm-up
        _checked(await client.post(path, json={"params": {"n": 0}}))
        requests = max(1, sizes.batch_create // sizes.batch)
        batch_calls = [lambda: client.post(f"{path}/batch", json=body) for _ in range(requests)]
        batch_samples, batch_s = await _drive(batch_calls, sizes.http_clients)
        single_calls = [
            lambda j=j: client.post(path, json={"params": {"n": j}})
            for j in range(sizes.single_create)
        ]
        single_samples, single_s = await _drive(single_calls, sizes.http_clients)
    return {
        "batch_instances_per_s": requests * sizes.batch / batch_s,
        **latency("batch_", batch_samples),
        "single_instances_per_s": sizes.single_create / single_s,
        **latency("single_", single_samples),
    }


ASK_END_AFTER_S = 0.02
"""How long after the event's answer the client asks for the run's end time (which the server
takes when the run ends, whenever it is asked): a request served while the run finishes would
compete for the processor with what is measured (on PostgreSQL the end's commit waited for
the loop to serve it: p50 4.2-4.6 ms asked at once, 3.5-3.7 asked later)."""


async def event_round_trip(server: Server, engine: str, n: int) -> dict[str, float]:
    """Create an instance that waits for an event; once it waits, send the event over HTTP and
    time until its next step has finished and the instance completed."""
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:

        async def one() -> tuple[float, float]:
            if engine == "stepstone":
                created = _checked(await client.post(f"{ACCOUNT}/bench-event/instances", json={}))
                instance_id = created["result"]["id"]
                send_path = f"{ACCOUNT}/bench-event/instances/{instance_id}/events/go"
            else:
                instance_id = _checked(await client.post("/dbos/event"))["id"]
                send_path = f"/dbos/events/{instance_id}"
            _checked(await client.get(f"/bench/waiting/{instance_id}"))
            start = now_ms()
            _checked(await client.post(send_path, json={"ok": True}))
            answered = now_ms()
            await asyncio.sleep(ASK_END_AFTER_S)
            ended = _checked(await client.get(f"/bench/finished/{instance_id}"))
            if ended["status"] != "complete":
                raise RuntimeError(f"instance {instance_id} ended {ended['status']}")
            return ended["ended_ms"] - start, answered - start

        await one()  # warm-up
        samples = [await one() for _ in range(n)]
    trips = [s[0] for s in samples]
    return {**latency("", trips), "send_p50_ms": percentile([s[1] for s in samples], 50)}


async def lists(server: Server, sizes: Sizes) -> dict[str, float]:
    """First pages (page mode, with the total count) and cursor pages, of all instances and of
    one status, over ``sizes.stored`` stored instances."""
    path = f"{ACCOUNT}/bench-ten/instances"
    figures: dict[str, float] = {}
    async with httpx.AsyncClient(base_url=server.url, timeout=120) as client:
        for label, params in (("all", {}), ("status", {"status": "errored"})):
            first: list[float] = []
            cursor = None
            _checked(await client.get(path, params={**params, "per_page": 50}))  # warm-up
            for _ in range(sizes.pages):
                start = now_ms()
                page = _checked(await client.get(path, params={**params, "per_page": 50}))
                first.append(now_ms() - start)
                cursor = page["result_info"]["cursor"]
                if len(page["result"]) != 50:
                    raise RuntimeError(f"a page of {label} held {len(page['result'])}")
            following: list[float] = []
            for _ in range(sizes.pages):
                if cursor is None:
                    break
                start = now_ms()
                page = _checked(
                    await client.get(path, params={**params, "per_page": 50, "cursor": cursor})
                )
                following.append(now_ms() - start)
                cursor = page["result_info"]["cursor"]
            figures[f"{label}_first_p50_ms"] = percentile(first, 50)
            figures[f"{label}_cursor_p50_ms"] = percentile(following, 50)
    return figures
