"""The workflow-runs family in process: its error shape, lenient bodies, bad input answered
4xx (never 5xx), and runs seen through both API families."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stepstone.api import create_app
from stepstone.engine import Engine
from stepstone.engine.keys import KeyService
from stepstone.storage.sql import SqlStore
from stepstone.worker.worker import Worker
from tests.api import flows

PROJECT = "acme"


@pytest.fixture
async def http(engine: Engine, store: SqlStore) -> AsyncIterator[httpx.AsyncClient]:
    key = (await KeyService(store).create(PROJECT, ["admin"]))[1]
    transport = httpx.ASGITransport(app=create_app(engine))
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://test",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    ) as client:
        yield client


def failure(response: httpx.Response, status: int) -> str:
    """Strait's error shape, with the message at the top too (where strait-python reads it)."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "message", "request_id"}
    assert body["error"]["message"] == body["message"]
    assert isinstance(body["error"]["code"], str)
    assert "Traceback" not in body["message"]
    return str(body["message"])


async def _workflow(
    http: httpx.AsyncClient, slug: str, steps: list[dict[str, Any]]
) -> dict[str, Any]:
    created = await http.post(
        "/v1/workflows", json={"project_id": PROJECT, "name": slug, "slug": slug, "steps": steps}
    )
    assert created.status_code == 201, created.text
    return dict(created.json())


async def test_graph_runs_are_cloudflare_instances_and_python_instances_are_runs(
    http: httpx.AsyncClient, engine: Engine, worker: Worker
) -> None:
    graph = await _workflow(http, "both-ways", [{"step_ref": "gate", "step_type": "approval"}])
    run = (
        await http.post(f"/v1/workflows/{graph['id']}/trigger", json={"payload": {"n": 1}})
    ).json()
    listed = await http.get(f"/client/v4/accounts/{PROJECT}/workflows/both-ways/instances")
    assert [i["id"] for i in listed.json()["result"]] == [run["id"]]
    await engine.deploy_class(flows.Echo, tenant=PROJECT)
    instance = await engine.create_instance("echo", params={"n": 2}, tenant=PROJECT)
    await worker.run_until_idle(advance=False)
    seen = (await http.get(f"/v1/workflow-runs/{instance.id}")).json()
    assert seen["status"] == "completed"
    steps = (await http.get(f"/v1/workflow-runs/{instance.id}/steps")).json()
    assert [s["status"] for s in steps] == ["completed"] * len(steps)
    runs = (await http.get("/v1/workflow-runs", params={"project_id": PROJECT})).json()
    assert {run["id"], instance.id} <= {r["id"] for r in runs}
    answer = await http.post(f"/v1/workflow-runs/{instance.id}/steps/x/skip")
    assert "Python workflow" in failure(answer, 409)


async def test_bodiless_posts_are_empty_objects(http: httpx.AsyncClient, worker: Worker) -> None:
    graph = await _workflow(http, "bodiless", [{"step_ref": "gate", "step_type": "approval"}])
    run = (await http.post(f"/v1/workflows/{graph['id']}/trigger", content=b"")).json()
    assert run["payload"] is None
    await worker.run_until_idle(advance=False)
    for action in ("pause", "resume"):
        answer = await http.post(f"/v1/workflow-runs/{run['id']}/{action}", content=b"")
        assert answer.status_code == 200, answer.text
    answer = await http.post(f"/v1/workflow-runs/{run['id']}/steps/gate/skip", content=b"")
    assert answer.status_code == 200, answer.text


async def test_unknown_routes_and_trailing_slashes_are_404s_in_strait_shape(
    http: httpx.AsyncClient,
) -> None:
    assert "no such route" in failure(await http.get("/v1/workflow-runs/"), 404)
    assert "no such route" in failure(await http.get("/v1/nothing-here"), 404)
    assert "not found" in failure(await http.get("/v1/workflows/nope"), 404)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
_PATH_CHARS = st.characters(
    whitelist_categories=("L", "N", "P", "S"), blacklist_characters="/?#%\\"
)
"""What may stand in a path segment (httpx refuses control characters before sending)."""
_step = st.fixed_dictionaries(
    {"step_ref": st.text(max_size=5) | st.integers()},
    optional={
        "step_type": st.sampled_from(
            ["job", "approval", "sleep", "wait_for_event", "sub_workflow", "x"]
        ),
        "type": st.text(max_size=5),
        "job_id": _json,
        "depends_on": st.lists(st.text(max_size=5), max_size=3) | _json,
        "condition": _json,
        "payload": _json,
        "on_failure": st.text(max_size=12),
        "retry_max_attempts": _json,
        "sleep_duration_secs": _json,
        "event_key": _json,
        "approvers": _json,
    },
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=st.fixed_dictionaries(
        {"project_id": st.just(PROJECT) | _json, "name": _json, "slug": _json},
        optional={
            "steps": st.lists(_step, max_size=4) | _json,
            "max_parallel_steps": _json,
            "tags": _json,
            "cron": _json,
        },
    )
)
async def test_no_definition_gets_a_server_error(
    http: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    answer = await http.post("/v1/workflows", json=body)
    assert answer.status_code < 500, answer.text
    if answer.status_code >= 400:
        failure(answer, answer.status_code)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    path=st.sampled_from(
        [
            "/v1/workflow-runs/{run}/steps/{ref}/approve",
            "/v1/workflow-runs/{run}/steps/{ref}/skip",
            "/v1/workflow-runs/{run}/steps/{ref}/force-complete",
            "/v1/workflow-runs/bulk-cancel",
            "/v1/workflow-runs/bulk-replay",
            "/v1/events/{ref}/send",
            "/v1/workflows/{run}/trigger",
        ]
    ),
    run=st.text(min_size=1, max_size=8, alphabet=_PATH_CHARS),
    ref=st.text(min_size=1, max_size=8, alphabet=_PATH_CHARS),
    body=_json | st.binary(max_size=12),
)
async def test_no_request_gets_a_server_error(
    http: httpx.AsyncClient, path: str, run: str, ref: str, body: Any
) -> None:
    url = path.format(run=run, ref=ref)
    content = body if isinstance(body, bytes) else None
    answer = await http.post(url, content=content, json=None if content is not None else body)
    assert answer.status_code < 500, answer.text


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/workflows", b"[" * 100_000),
        ("/v1/workflow-runs/bulk-cancel", b'{"workflow_run_ids": ' + b"[" * 100_000),
        ("/v1/workflows/x/trigger", b'{"payload": ' + b'{"a": ' * 50_000),
    ],
    ids=["list", "bulk-cancel", "trigger"],
)
async def test_a_body_nested_too_deep_is_a_bad_request(
    http: httpx.AsyncClient, path: str, body: bytes
) -> None:
    assert "nested too deeply" in failure(await http.post(path, content=body), 400)


async def test_the_run_list_pages_by_the_cursor_it_hands_out(
    http: httpx.AsyncClient, worker: Worker
) -> None:
    graph = await _workflow(http, "paged", [{"step_ref": "gate", "step_type": "approval"}])
    started = [
        (await http.post(f"/v1/workflows/{graph['id']}/trigger", json={})).json()["id"]
        for _ in range(5)
    ]
    seen: list[str] = []
    params: dict[str, Any] = {"project_id": PROJECT, "limit": 2}
    pages = 0
    while True:
        answer = await http.get("/v1/workflow-runs", params=params)
        assert answer.status_code == 200, answer.text
        seen += [r["id"] for r in answer.json()]
        pages += 1
        cursor = answer.headers.get("X-Next-Cursor")
        if cursor is None:
            assert "Link" not in answer.headers
            break
        assert f"cursor={cursor}" in answer.headers["Link"]
        params["cursor"] = cursor
    assert pages == 3
    assert seen == list(reversed(started))  # newest first, each once
    by_offset = await http.get(
        "/v1/workflow-runs", params={"project_id": PROJECT, "limit": 2, "offset": 4}
    )
    assert [r["id"] for r in by_offset.json()] == [started[0]]


async def test_a_dry_run_trigger_checks_and_starts_nothing(http: httpx.AsyncClient) -> None:
    graph = await _workflow(http, "dry", [{"step_ref": "gate", "step_type": "approval"}])
    answer = await http.post(
        f"/v1/workflows/{graph['id']}/trigger", json={"payload": {"n": 1}, "dry_run": True}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "dry_run": True,
        "valid": True,
        "workflow_id": graph["id"],
        "step_count": 1,
    }
    assert (await http.get("/v1/workflow-runs", params={"project_id": PROJECT})).json() == []
    bad = await http.post(
        f"/v1/workflows/{graph['id']}/trigger", json={"dry_run": True, "tags": [1]}
    )
    assert "tags" in failure(bad, 400)
    assert "dry_run" in failure(
        await http.post(f"/v1/workflows/{graph['id']}/trigger", json={"dry_run": "yes"}), 400
    )


async def test_every_update_makes_a_version(http: httpx.AsyncClient) -> None:
    graph = await _workflow(http, "versions", [{"step_ref": "gate", "step_type": "approval"}])
    renamed = await http.patch(f"/v1/workflows/{graph['id']}", json={"name": "Renamed"})
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["version"] == graph["version"] + 1
    versions = (await http.get(f"/v1/workflows/{graph['id']}/versions")).json()
    listed = versions["data"] if isinstance(versions, dict) else versions
    assert len(listed) == 2


async def test_health_and_readiness_as_strait_serves_them(http: httpx.AsyncClient) -> None:
    for path in ("/health", "/health/ready"):
        answer = await http.get(path)
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "ok"


async def test_operations_the_state_forbids_are_409s_that_say_why(
    http: httpx.AsyncClient, worker: Worker
) -> None:
    graph = await _workflow(
        http,
        "states",
        [
            {"step_ref": "gate", "step_type": "approval"},
            {"step_ref": "a", "step_type": "job", "job_id": "echo", "depends_on": ["gate"]},
        ],
    )
    run = (await http.post(f"/v1/workflows/{graph['id']}/trigger", json={})).json()
    await worker.run_until_idle(advance=False)
    base = f"/v1/workflow-runs/{run['id']}"
    assert "not an approval" in failure(await http.post(f"{base}/steps/a/approve"), 409)
    assert "only a settled step" in failure(await http.post(f"{base}/steps/gate/retry"), 409)
    assert (await http.delete(base)).status_code == 200
    assert "cannot resume" in failure(await http.post(f"{base}/resume"), 409)
    assert "canceled" in failure(await http.post(f"{base}/steps/gate/force-complete"), 409)
    assert "canceled" in failure(await http.post(f"{base}/steps/gate/replay-subtree"), 409)
    assert (await http.get(base)).json()["status"] == "canceled"


async def test_a_run_past_its_timeout_shows_timed_out(
    http: httpx.AsyncClient, worker: Worker
) -> None:
    created = await http.post(
        "/v1/workflows",
        json={
            "project_id": PROJECT,
            "name": "late",
            "slug": "late",
            "timeout_secs": 60,
            "steps": [{"step_ref": "gate", "step_type": "approval"}],
        },
    )
    run = (await http.post(f"/v1/workflows/{created.json()['id']}/trigger", json={})).json()
    assert run["expires_at"] is not None
    await worker.run_until_idle()  # the fake clock jumps to the deadline
    assert (await http.get(f"/v1/workflow-runs/{run['id']}")).json()["status"] == "timed_out"
    listed = await http.get(
        "/v1/workflow-runs", params={"project_id": PROJECT, "status": "timed_out"}
    )
    assert [r["id"] for r in listed.json()] == [run["id"]]
