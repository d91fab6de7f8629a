"""The Cloudflare-compatible family in process: envelope, keys, tenants, filters, retention."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from stepstone import WorkflowEntrypoint
from stepstone.api import create_app
from stepstone.domain.status import InstanceStatus
from stepstone.engine import DEFAULT_TENANT, Engine
from stepstone.engine.keys import KeyService
from stepstone.runtime.clock import FakeClock
from stepstone.storage.sql import SqlStore
from stepstone.storage.tables import events
from stepstone.worker.worker import Worker
from tests.api import flows

START = "2023-11-14T22:13:20"
"""FakeClock's start, 1_700_000_000_000 ms, as Cloudflare writes a date: UTC, no offset."""


@dataclass(frozen=True)
class Api:
    """Calls under ``/client/v4/accounts/{account}`` with one key."""

    http: httpx.AsyncClient
    token: str | None
    account: str = "acme"

    async def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        url = f"/client/v4/accounts/{self.account}/{path}"
        return await self.http.request(method, url, headers=headers, **kwargs)

    async def ok(self, method: str, path: str, **kwargs: Any) -> Any:
        """The ``result`` of a call that must succeed."""
        return (await self.ok_body(method, path, **kwargs))["result"]

    async def ok_body(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = await self.call(method, path, **kwargs)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        assert (body["success"], body["errors"], body["messages"]) == (True, [], [])
        return body


@dataclass(frozen=True)
class Keys:
    admin: str
    read_only: str
    globex: str


def failure(response: httpx.Response, status: int) -> str:
    """Check Cloudflare's error envelope exactly; return its message."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body == {
        "success": False,
        "errors": [{"code": body["errors"][0]["code"], "message": body["errors"][0]["message"]}],
        "messages": [],
        "result": None,
    }
    [error] = body["errors"]
    assert isinstance(error["code"], int)
    assert isinstance(error["message"], str)
    assert error["message"]
    assert "Traceback" not in error["message"]
    return str(error["message"])


@pytest.fixture
async def keys(store: SqlStore) -> Keys:
    service = KeyService(store)
    return Keys(
        admin=(await service.create("acme", ["admin"]))[1],
        read_only=(await service.create("acme", ["workflows:read"]))[1],
        globex=(await service.create("globex", ["admin"]))[1],
    )


@pytest.fixture
async def http(engine: Engine) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(engine))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


@pytest.fixture
def acme(http: httpx.AsyncClient, keys: Keys) -> Api:
    return Api(http, keys.admin)


@pytest.fixture(autouse=True)
def _count_from_zero() -> None:
    flows.RUNS.clear()


@pytest.fixture
def far_from_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run in a local zone nine hours off UTC: dates without an offset must still mean UTC."""
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


async def deploy(engine: Engine, *classes: type[WorkflowEntrypoint], tenant: str = "acme") -> None:
    for cls in classes:
        await engine.deploy_class(cls, tenant=tenant)


# ---------------------------------------------------------------------- envelope and auth
async def test_errors_come_in_the_envelope_with_their_status(
    engine: Engine, acme: Api, keys: Keys
) -> None:
    await deploy(engine, flows.Echo)
    await acme.ok("POST", "workflows/echo/instances", json={"instance_id": "one"})
    nobody = replace(acme, token=None)
    cases: list[tuple[Api, str, str, dict[str, Any], int]] = [
        (nobody, "GET", "workflows", {}, 401),
        (replace(acme, token="sk_000000000000_wrong"), "GET", "workflows", {}, 401),
        (replace(acme, token="not even a key"), "GET", "workflows/echo", {}, 401),
        (
            replace(acme, token=keys.read_only),
            "POST",
            "workflows/echo/instances",
            {"json": {}},
            403,
        ),
        (replace(acme, token=keys.read_only), "DELETE", "workflows/echo", {}, 403),
        (acme, "GET", "workflows/nope", {}, 404),
        (acme, "GET", "workflows/echo/instances/nope", {}, 404),
        (acme, "GET", "workflows/echo/versions/nope", {}, 404),
        (acme, "GET", "workflows/echo/instances/one/step", {"params": {"name": "nope"}}, 404),
        (replace(acme, account="globex"), "GET", "workflows/echo", {}, 404),
        (acme, "GET", "no/such/route", {}, 404),
        (acme, "DELETE", "workflows/echo/instances", {}, 405),
        (acme, "POST", "workflows/echo/instances", {"content": b"{not json"}, 400),
        (acme, "POST", "workflows/echo/instances", {"json": {"instance_id": "a b"}}, 400),
        (acme, "POST", "workflows/echo/instances", {"json": {"instance_id": 7}}, 400),
        (acme, "POST", "workflows/echo/instances/batch", {"json": []}, 400),
        (acme, "PATCH", "workflows/echo/instances/one/status", {"json": {"status": "x"}}, 400),
        (acme, "PATCH", "workflows/echo/instances/one/status", {"json": {}}, 400),
        (acme, "GET", "workflows/echo/instances", {"params": {"status": "sleepy"}}, 400),
        (acme, "GET", "workflows/echo/instances", {"params": {"per_page": 0}}, 400),
        (acme, "GET", "workflows/echo/instances", {"params": {"date_start": "soon"}}, 400),
        (acme, "POST", "workflows/echo/instances", {"json": {"instance_id": "one"}}, 409),
    ]
    for api, method, path, kwargs, status in cases:
        response = await api.call(method, path, **kwargs)
        message = failure(response, status)
        assert message, (method, path)


async def test_error_codes_follow_cloudflare(acme: Api) -> None:
    missing = await replace(acme, token=None).call("GET", "workflows")
    failure(missing, 401)
    assert missing.json()["errors"][0]["code"] == 10000
    unknown = await acme.call("GET", "workflows/nope")
    assert unknown.json()["errors"][0] == {"code": 10404, "message": "workflow 'nope' not found"}


async def test_a_read_key_reads_but_does_not_write(engine: Engine, acme: Api, keys: Keys) -> None:
    await deploy(engine, flows.Echo)
    reader = replace(acme, token=keys.read_only)
    assert [w["name"] for w in await reader.ok("GET", "workflows")] == ["echo"]
    assert await reader.ok("GET", "workflows/echo/instances") == []
    message = failure(await reader.call("POST", "workflows/echo/instances", json={}), 403)
    assert "workflows:execute" in message
    put = {"class_name": "Echo", "script_name": "flows"}
    assert "workflows:write" in failure(await reader.call("PUT", "workflows/x", json=put), 403)


async def test_tenants_see_only_their_own(engine: Engine, acme: Api, keys: Keys) -> None:
    await deploy(engine, flows.Echo)
    await deploy(engine, flows.Chain, tenant="globex")
    await acme.ok("POST", "workflows/echo/instances", json={"instance_id": "mine"})
    globex = replace(acme, token=keys.globex, account="globex")

    assert [w["name"] for w in await acme.ok("GET", "workflows")] == ["echo"]
    assert [w["name"] for w in await globex.ok("GET", "workflows")] == ["chain"]
    failure(await globex.call("GET", "workflows/echo"), 404)
    failure(await globex.call("GET", "workflows/echo/instances/mine"), 404)
    failure(await globex.call("POST", "workflows/echo/instances", json={}), 404)
    # a key never reaches another account, not even to learn that it exists
    failure(await replace(globex, account="acme").call("GET", "workflows/echo"), 404)
    failure(await replace(acme, account="globex").call("GET", "workflows/chain"), 404)
    assert (await engine.get_instance("echo", "mine", tenant="acme")).instance.id == "mine"


async def test_open_access_takes_any_token_and_any_account_as_local(engine: Engine) -> None:
    await deploy(engine, flows.Echo, tenant=DEFAULT_TENANT)
    await deploy(engine, flows.Chain, tenant="acme")
    transport = httpx.ASGITransport(app=create_app(engine, open_access=True))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        anyone = Api(http, token="anything at all", account="0123abcd")
        assert [w["name"] for w in await anyone.ok("GET", "workflows")] == ["echo"]
        created = await Api(http, None, "elsewhere").ok(
            "POST", "workflows/echo/instances", json={"instance_id": "dev-1"}
        )
        assert created["id"] == "dev-1"
        failure(await anyone.call("GET", "workflows/chain"), 404)
    view = await engine.get_instance("echo", "dev-1", tenant=DEFAULT_TENANT)
    assert view.instance.tenant == DEFAULT_TENANT


# ---------------------------------------------------------------------- workflows
async def test_search_and_schedules_in_the_workflow_list(engine: Engine, acme: Api) -> None:
    await deploy(engine, flows.Echo, flows.Chain)
    put = {"class_name": "Echo", "script_name": "flows", "schedules": [{"cron": "0 * * * *"}]}
    updated = await acme.ok("PUT", "workflows/hourly-echo", json=put)
    assert updated["name"] == "hourly-echo"

    listed = {w["name"]: w for w in await acme.ok("GET", "workflows")}
    assert set(listed) == {"echo", "chain", "hourly-echo"}
    assert listed["hourly-echo"]["schedules"] == [
        {"cron": "0 * * * *", "next_instance": "2023-11-14T23:00:00.000Z"}
    ]
    assert listed["echo"]["schedules"] == []
    found = await acme.ok("GET", "workflows", params={"search": "hourly"})
    assert [w["name"] for w in found] == ["hourly-echo"]
    assert await acme.ok("GET", "workflows", params={"search": "zzz"}) == []
    page = await acme.ok_body("GET", "workflows", params={"per_page": 2, "page": 2})
    assert len(page["result"]) == 1
    assert page["result_info"] == {"page": 2, "per_page": 2, "count": 1, "total_count": 3}


# ---------------------------------------------------------------------- instances
async def test_sensitive_output_is_redacted_everywhere(
    engine: Engine, worker: Worker, acme: Api
) -> None:
    await deploy(engine, flows.Secret)
    await acme.ok("POST", "workflows/secret/instances", json={"instance_id": "s"})
    await worker.run_until_idle()
    detail = await acme.call("GET", "workflows/secret/instances/s")
    assert "s3cr3t" not in detail.text
    [step] = detail.json()["result"]["steps"]
    assert (step["name"], step["output"]) == ("token", "[REDACTED]")
    assert step["config"]["sensitive"] == "output"
    output = await acme.call("GET", "workflows/secret/instances/s/step", params={"name": "token"})
    assert "s3cr3t" not in output.text
    assert output.json()["result"] == {"status": "complete", "error": None, "output": "[REDACTED]"}


@pytest.mark.usefixtures("far_from_utc")
async def test_instance_list_filters_and_pages(
    engine: Engine, worker: Worker, clock: FakeClock, acme: Api
) -> None:
    await deploy(engine, flows.Echo)
    ids = [f"i{n}" for n in range(5)]
    for instance_id in ids:  # one a second: i0 at START, i4 four seconds later
        await acme.ok("POST", "workflows/echo/instances", json={"instance_id": instance_id})
        await clock.advance(1_000)
        if instance_id == "i2":
            await worker.run_until_idle()  # i0..i2 complete, i3 and i4 stay queued

    async def listed(**params: Any) -> list[str]:
        return [i["id"] for i in await acme.ok("GET", "workflows/echo/instances", params=params)]

    assert await listed() == ids[::-1]  # newest first
    assert await listed(direction="asc") == ids
    assert await listed(status="complete") == ["i2", "i1", "i0"]
    assert await listed(status="queued") == ["i4", "i3"]
    assert await listed(status="errored") == []
    assert await listed(date_start="2023-11-14T22:13:21", direction="asc") == [
        "i1",
        "i2",
        "i3",
        "i4",
    ]
    assert await listed(date_end="2023-11-14T22:13:22", direction="asc") == ["i0", "i1", "i2"]
    assert await listed(date_start=START + "Z", date_end="2023-11-14T22:13:20.500Z") == ["i0"]

    page = await acme.ok_body("GET", "workflows/echo/instances", params={"page": 2, "per_page": 2})
    assert [i["id"] for i in page["result"]] == ["i2", "i1"]
    info = page["result_info"]
    assert (info["page"], info["per_page"], info["count"], info["total_count"]) == (2, 2, 2, 5)

    for direction, expected in (("asc", ids), ("desc", ids[::-1])):
        walked: list[str] = []
        params: dict[str, Any] = {"per_page": 2, "direction": direction}
        for _ in range(10):
            body = await acme.ok_body("GET", "workflows/echo/instances", params=params)
            walked += [i["id"] for i in body["result"]]
            if body["result_info"]["cursor"] is None:
                break
            params["cursor"] = body["result_info"]["cursor"]
        assert walked == expected

    both = await acme.call("GET", "workflows/echo/instances", params={"page": 1, "cursor": "x"})
    failure(both, 400)


async def test_restart_from_a_step_reruns_it_and_those_after_only(
    engine: Engine, worker: Worker, acme: Api
) -> None:
    await deploy(engine, flows.Chain)
    await acme.ok("POST", "workflows/chain/instances", json={"instance_id": "c"})
    await worker.run_until_idle()
    before = (await acme.ok("GET", "workflows/chain/instances/c"))["output"]
    assert flows.RUNS == {"first": 1, "second": 1, "third": 1}

    restart = {"status": "restart", "from": {"name": "second", "count": 1, "type": "do"}}
    changed = await acme.ok("PATCH", "workflows/chain/instances/c/status", json=restart)
    assert changed["status"] == "queued"
    await worker.run_until_idle()
    detail = await acme.ok("GET", "workflows/chain/instances/c")
    assert detail["status"] == "complete"
    assert flows.RUNS == {"first": 1, "second": 2, "third": 2}
    assert detail["output"][0] == before[0]
    assert detail["output"][1:] != before[1:]

    await acme.ok("PATCH", "workflows/chain/instances/c/status", json={"status": "restart"})
    await worker.run_until_idle()
    assert flows.RUNS == {"first": 2, "second": 3, "third": 3}


async def test_retention_purges_finished_instances(
    engine: Engine, worker: Worker, clock: FakeClock, store: SqlStore, acme: Api
) -> None:
    await deploy(engine, flows.Echo)
    short = {"success_retention": "1 second"}
    await acme.ok(
        "POST",
        "workflows/echo/instances",
        json={"instance_id": "brief", "instance_retention": short},
    )
    await acme.ok("POST", "workflows/echo/instances", json={"instance_id": "kept"})
    put = {"class_name": "Echo", "script_name": "flows", "default_retention": short}
    await acme.ok("PUT", "workflows/fleeting", json=put)
    await acme.ok("POST", "workflows/fleeting/instances", json={"instance_id": "by-default"})
    await worker.run_until_idle()
    assert await store.purge(clock.now_ms(), 100) == 0

    await clock.advance(1_000)
    assert await store.purge(clock.now_ms(), 100) == 2
    failure(await acme.call("GET", "workflows/echo/instances/brief"), 404)
    failure(await acme.call("GET", "workflows/fleeting/instances/by-default"), 404)
    assert (await acme.ok("GET", "workflows/echo/instances/kept"))["status"] == "complete"
    counts = (await acme.ok("GET", "workflows/echo"))["instances"]
    assert counts["complete"] == 1


async def _job_done(api: Api) -> dict[str, Any]:
    """Poll the terminate job with a deadline until it has completed."""
    deadline = asyncio.get_running_loop().time() + 10
    while (job := await api.ok("GET", "workflows/approval/instances/terminate"))[
        "status"
    ] != "completed":
        assert asyncio.get_running_loop().time() < deadline, f"terminate job stuck: {job}"
        await asyncio.sleep(0.01)
    return dict(job)


async def test_batch_terminate_and_its_job_status(
    engine: Engine, worker: Worker, acme: Api
) -> None:
    await deploy(engine, flows.Approval)
    batch = [{"instance_id": f"w{n}"} for n in range(3)]
    created = await acme.ok("POST", "workflows/approval/instances/batch", json=batch)
    assert [i["id"] for i in created] == ["w0", "w1", "w2"]
    await worker.run_until_idle(advance=False)
    assert await acme.ok("GET", "workflows/approval/instances/terminate") == {
        "status": "idle",
        "instancesTerminated": 0,
    }

    started = await acme.ok(
        "POST", "workflows/approval/instances/batch/terminate", json=["w0", "w1"]
    )
    assert started == {"status": "running", "instancesTerminated": 2}  # an asynchronous job
    assert await _job_done(acme) == {"status": "completed", "instancesTerminated": 2}
    rest = await acme.ok("POST", "workflows/approval/instances/batch/terminate")
    assert rest == {"status": "running", "instancesTerminated": 1}
    assert await _job_done(acme) == {"status": "completed", "instancesTerminated": 1}
    statuses = {
        i.id: i.status for i in (await engine.list_instances("approval", tenant="acme")).items
    }
    assert set(statuses.values()) == {InstanceStatus.TERMINATED}


async def test_an_event_reaches_a_waiting_instance(
    engine: Engine, worker: Worker, acme: Api
) -> None:
    await deploy(engine, flows.Approval)
    await acme.ok("POST", "workflows/approval/instances", json={"instance_id": "a"})
    await worker.run_until_idle(advance=False)
    sent = await acme.ok(
        "POST", "workflows/approval/instances/a/events/approved", json={"user": "bo"}
    )
    assert sent == {"instanceId": "a", "timestamp": START + ".000Z"}
    await worker.run_until_idle(advance=False)
    detail = await acme.ok("GET", "workflows/approval/instances/a")
    assert (detail["status"], detail["output"]) == ("complete", {"by": "bo"})
    wait = await acme.ok(
        "GET",
        "workflows/approval/instances/a/step",
        params={"name": "approval", "type": "waitForEvent"},
    )
    assert wait == {"status": "complete", "error": None, "output": {"user": "bo"}}


async def test_an_event_for_no_instance_or_a_finished_one_is_refused(
    engine: Engine, store: SqlStore, worker: Worker, acme: Api, keys: Keys
) -> None:
    """The instance is found and the event stored in one transaction: each way it can be
    missing, or past taking events, still answers with its own error and stores nothing."""
    await deploy(engine, flows.Approval)
    await acme.ok("POST", "workflows/approval/instances", json={"instance_id": "a"})
    await worker.run_until_idle(advance=False)
    send = "workflows/{}/instances/{}/events/approved"
    message = failure(await acme.call("POST", send.format("nope", "a"), json={}), 404)
    assert "workflow 'nope' not found" in message
    message = failure(await acme.call("POST", send.format("approval", "b"), json={}), 404)
    assert "instance 'b'" in message
    globex = replace(acme, token=keys.globex, account="globex")
    failure(await globex.call("POST", send.format("approval", "a"), json={}), 404)

    await acme.ok("PATCH", "workflows/approval/instances/a/status", json={"status": "terminate"})
    message = failure(await acme.call("POST", send.format("approval", "a"), json={}), 400)
    assert "is terminated; it takes no more events" in message
    assert (await engine.get_instance("approval", "a", tenant="acme")).instance.status is (
        InstanceStatus.TERMINATED
    )
    stored = select(func.count()).select_from(events)
    assert await store._db.read(lambda conn: conn.execute(stored).scalar_one()) == 0


# ---------------------------------------------------------------------- no 500s
async def test_nul_in_a_name_id_or_filter_is_a_bad_request(engine: Engine, acme: Api) -> None:
    """PostgreSQL text cannot hold NUL: it must be refused before any lookup."""
    await deploy(engine, flows.Approval)
    await acme.ok("POST", "workflows/approval/instances", json={"instance_id": "there"})
    put = {"class_name": "Approval", "script_name": "flo\x00ws"}
    for method, path, kwargs in [
        ("GET", "workflows/appr%00oval", {}),
        ("GET", "workflows/approval/instances/th%00ere", {}),
        ("GET", "workflows/approval/versions/%00", {}),
        ("POST", "workflows/approval/instances/there/events/appr%00oved", {"json": {}}),
        ("GET", "workflows", {"params": {"search": "a\x00"}}),
        ("GET", "workflows/approval/instances", {"params": {"cursor": "\x00"}}),
        ("GET", "workflows/approval/instances/there/step", {"params": {"name": "\x00"}}),
        ("PUT", "workflows/approval", {"json": put}),
    ]:
        assert "NUL" in failure(await acme.call(method, path, **kwargs), 400), path


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
BODIES = JSON | st.fixed_dictionaries(
    {},
    optional={
        "instance_id": JSON | st.text(max_size=120),
        "params": JSON,
        "instance_retention": JSON,
        "status": JSON | st.sampled_from(["pause", "resume", "terminate", "restart"]),
        "from": JSON,
        "rollback": JSON,
    },
)
# Starlette decodes %2F before routing, so an id holding "/" names another path (and one ending
# in "/" gets Starlette's bare 307 to the path without it): ids here are single path segments.
IDS = st.text(min_size=1, max_size=120).filter(lambda s: "/" not in s and s not in (".", ".."))


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=BODIES, instance_id=IDS, raw=st.binary(max_size=40))
async def test_garbage_never_gets_a_server_error(
    engine: Engine, acme: Api, body: Any, instance_id: str, raw: bytes
) -> None:
    if not await engine.store.get_workflow("acme", "approval"):
        await deploy(engine, flows.Approval)
        await acme.ok("POST", "workflows/approval/instances", json={"instance_id": "there"})
    quoted = quote(instance_id, safe="")
    attempts = [
        ("POST", "workflows/approval/instances", {"json": body}),
        ("POST", "workflows/approval/instances", {"content": raw}),
        ("POST", "workflows/approval/instances/batch", {"json": [body, body]}),
        ("PATCH", "workflows/approval/instances/there/status", {"json": body}),
        ("PATCH", f"workflows/approval/instances/{quoted}/status", {"json": body}),
        ("GET", f"workflows/approval/instances/{quoted}", {}),
        ("POST", f"workflows/approval/instances/there/events/{quoted}", {"json": body}),
        ("POST", f"workflows/approval/instances/{quoted}/events/approved", {"content": raw}),
    ]
    for method, path, kwargs in attempts:
        response = await acme.call(method, path, **kwargs)
        where = (method, path, response.status_code, response.text)
        assert response.status_code < 500, where
        assert response.headers.get("content-type") == "application/json", where
        result = response.json()
        if response.status_code >= 400:
            failure(response, response.status_code)
        else:
            assert result["success"] is True
