"""Stop the PostgreSQL cluster in the middle of a run, keep it down, start it again.

A worker process and an API server process are connected when the server goes away. The worker
says so in its log and carries on once the database is back; every instance completes and no
step result is committed twice. While the database is down the API answers 503 in Cloudflare's
envelope, and 200 again afterwards.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from stepstone.engine import Engine
from stepstone.storage import open_store
from tests.e2e.process import Server, stepstone
from tests.postgres_faults.support import (
    WorkerProcess,
    accepts_connections,
    local_cluster,
    pg_ctlcluster,
    poll,
    query,
    scalar,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

INSTANCES = 200
STEP_NAMES = ("a1", "a2", "b1", "b2")
TENANT = "t"
FAST_LEASE = {
    "STEPSTONE_LEASE_MS": "2000",
    "STEPSTONE_HEARTBEAT_MS": "500",
    "STEPSTONE_POLL_MS": "100",
}

WORKFLOW = """
import asyncio
import os

from stepstone import WorkflowEntrypoint


async def work(instance_id, name):
    with open(os.environ["FAULTS_SIDE_EFFECTS"], "a") as log:
        log.write(f"{instance_id} {name}\\n")
    await asyncio.sleep(0.3)
    return name


async def keep():
    # Runs until the test lets it go: it keeps the worker busy across the restart.
    while not os.path.exists(os.environ["FAULTS_RELEASE"]):
        await asyncio.sleep(0.05)
    return "kept"


class Napper(WorkflowEntrypoint):
    async def run(self, event, step):
        if event.payload == "keeper":
            return await step.do("keep", keep)
        for name in ("a1", "a2"):
            await step.do(name, work, event.instance_id, name)
        await step.sleep("nap", "1 second")
        for name in ("b1", "b2"):
            await step.do(name, work, event.instance_id, name)
        return "done"
"""


def _side_effects(path: Path) -> Counter[str]:
    return Counter(path.read_text().splitlines())


async def _api_status(server: Server, token: str) -> tuple[int, object]:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(
            f"{server.url}/client/v4/accounts/{TENANT}/workflows",
            headers={"Authorization": f"Bearer {token}"},
        )
    return response.status_code, response.json()


@pytest.mark.timeout(180)
async def test_a_database_restart_mid_run_loses_nothing(
    postgres_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = postgres_url
    cluster = local_cluster()
    effects = tmp_path / "side-effects.log"
    effects.touch()
    source = tmp_path / "napper.py"
    source.write_text(WORKFLOW)
    stepstone("deploy", str(source), "--tenant", TENANT, "--db", url)
    token = stepstone(
        "keys", "create", "--tenant", TENANT, "--scopes", "admin", "--db", url
    ).stdout.strip()

    release = tmp_path / "release-the-keeper"
    env = {**FAST_LEASE, "FAULTS_SIDE_EFFECTS": str(effects), "FAULTS_RELEASE": str(release)}
    worker = WorkerProcess(url, tmp_path / "worker.log", env=env)
    try:
        server = Server(url, tmp_path / "api.log", env=env, command=("serve", "--role", "api"))
    except BaseException:
        worker.stop()  # never leave a worker behind to load the machine
        raise
    try:
        assert (await _api_status(server, token))[0] == 200
        store = await open_store(url, migrate=False)
        try:
            await Engine(store).create_instances(
                "napper",
                [("keeper", "keeper"), *((f"n{i:03d}", None) for i in range(INSTANCES))],
                tenant=TENANT,
            )
        finally:
            await store.close()

        # A third of the steps have run: take the database away under the running instances.
        await poll(
            lambda: asyncio.to_thread(lambda: sum(_side_effects(effects).values())),
            lambda n: n >= INSTANCES * len(STEP_NAMES) // 3,
            timeout=30,
            what="a third of the steps to run",
        )
        assert await scalar(url, "SELECT status FROM instances WHERE id = 'keeper'") == "running"
        await asyncio.to_thread(pg_ctlcluster, cluster, "stop")
        stopped = time.monotonic()
        try:
            status, body = await _api_status(server, token)
            assert status == 503, body
            assert isinstance(body, dict)
            assert body["success"] is False
            assert body["result"] is None
            assert body["messages"] == []
            [error] = body["errors"]
            assert error["code"] == 10503
            assert "database is unavailable" in error["message"]
            await asyncio.sleep(max(0.0, 2 - (time.monotonic() - stopped)))  # stay down ~2 s
        finally:
            await asyncio.to_thread(pg_ctlcluster, cluster, "start")
            await poll(
                lambda: accepts_connections(url),
                bool,
                timeout=60,
                what="PostgreSQL to accept connections again",
            )
        restarted = time.monotonic()

        await poll(
            lambda: _api_status(server, token),
            lambda answer: answer[0] == 200,
            timeout=30,
            what="the API to answer 200 again",
        )
        # The keeper still runs, so the worker is busy: the instances whose runs the outage
        # stopped must still come back (their leases lapse; a busy worker must not renew them).
        await poll(
            lambda: scalar(
                url, "SELECT count(*) FROM instances WHERE status = 'complete' AND id <> 'keeper'"
            ),
            lambda n: n == INSTANCES,
            timeout=60,
            what=f"all {INSTANCES} instances to complete",
        )
        finished = time.monotonic()
        release.touch()
        await poll(
            lambda: scalar(url, "SELECT status FROM instances WHERE id = 'keeper'"),
            lambda status: status == "complete",
            timeout=30,
            what="the keeper to complete",
        )
        assert worker.alive, "the worker exited when the database went away"
        log = worker.text()
    finally:
        server.stop()
        code = worker.stop()
    assert code == 0

    assert await query(url, "SELECT DISTINCT status FROM instances") == [("complete",)]
    # Four steps and the sleep, each committed once (and the keeper's one step).
    assert await scalar(url, "SELECT count(*) FROM steps") == INSTANCES * (len(STEP_NAMES) + 1) + 1
    assert await scalar(url, "SELECT count(*) FROM steps WHERE state <> 'complete'") == 0
    runs = _side_effects(effects)
    assert set(runs) == {f"n{i:03d} {name}" for i in range(INSTANCES) for name in STEP_NAMES}
    # The worker said what happened, and that it carried on.
    assert "the database is unavailable" in log
    assert "the database is reachable again" in log
    assert "Traceback" not in log
    # Only the attempt each instance had in flight when the database went away runs again.
    re_executed = sum(runs.values()) - len(runs)
    with capsys.disabled():  # the figures belong in the run's output
        print(
            f"\n{INSTANCES} instances: database down for {restarted - stopped:.1f} s; all complete "
            f"{finished - restarted:.1f} s after it was back. Re-executed attempts: {re_executed}."
        )
    assert re_executed <= INSTANCES
