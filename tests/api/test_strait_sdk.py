"""The official ``strait-python`` client, unchanged, against a real ``stepstone serve``.

One server per module, with jobs deployed from ``tests/api/strait_jobs.py`` and a local HTTP
endpoint for HTTP jobs. Every test makes its own workflows.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import strait
from strait.authoring import (
    WorkflowOptions,
    approval_step,
    define_workflow,
    job_step,
    wait_for_event_step,
)

from tests.e2e.process import Server, stepstone

pytestmark = pytest.mark.slow

PROJECT = "acme"
JOBS = Path(__file__).with_name("strait_jobs.py")
_slugs = itertools.count(1)


class _Endpoint(BaseHTTPRequestHandler):
    """HTTP jobs' endpoint: /ok echoes; /flaky answers 408, then 429, then 503, then echoes;
    /bad is 400."""

    calls: ClassVar[dict[str, int]] = {}
    FLAKY: ClassVar[tuple[int, ...]] = (408, 429, 503)

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = json.loads(self.rfile.read(length) or b"null")
        self.calls[self.path] = self.calls.get(self.path, 0) + 1
        if self.path == "/flaky" and self.calls[self.path] <= len(self.FLAKY):
            self._answer(self.FLAKY[self.calls[self.path] - 1], {"error": "busy"})
        elif self.path == "/bad":
            self._answer(400, {"error": "no"})
        else:
            self._answer(200, {"echo": body, "calls": self.calls[self.path]})

    def _answer(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        return None


@dataclass(frozen=True)
class Api:
    server: Server
    key: str
    read_only: str
    other: str
    endpoint: str
    clients: list[strait.Client] = field(default_factory=list)

    def client(self, key: str | None = None) -> strait.Client:
        """A client with this key; the fixture closes it (strait.Client holds a connection)."""
        client = strait.Client(base_url=self.server.url, api_key=key or self.key)
        self.clients.append(client)
        return client


def _key(db: str, tenant: str, scopes: str) -> str:
    return stepstone(
        "keys", "create", "--tenant", tenant, "--scopes", scopes, "--db", db
    ).stdout.strip()


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    where = tmp_path_factory.mktemp("strait-sdk")
    db = str(where / "stepstone.db")
    keys = (
        _key(db, PROJECT, "admin"),
        _key(db, PROJECT, "workflows:read"),
        _key(db, "globex", "admin"),
    )
    stepstone("deploy", str(JOBS), "--tenant", PROJECT, "--db", db)
    http = ThreadingHTTPServer(("127.0.0.1", 0), _Endpoint)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    server = Server(
        db, where / "server.log", env={"STEPSTONE_POLL_MS": "50", "STEPSTONE_HOLD_MS": "200"}
    )
    api = Api(server, *keys, endpoint=f"http://127.0.0.1:{http.server_address[1]}")
    try:
        yield api
    finally:
        for client in api.clients:
            client.close()
        server.stop()
        http.shutdown()
        http.server_close()


def _slug(prefix: str) -> str:
    return f"{prefix}-{next(_slugs)}"


def _create(client: strait.Client, steps: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    slug = _slug(fields.pop("prefix", "wf"))
    return client.workflows.create(
        {"project_id": PROJECT, "name": slug, "slug": slug, "steps": steps, **fields}
    )


def _until(
    read: Callable[[], Any], done: Callable[[Any], bool], what: str, timeout: float = 20
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last: {value}")
        time.sleep(0.05)


def _finished(client: strait.Client, run_id: str) -> dict[str, Any]:
    return _until(
        lambda: client.workflow_runs.get(run_id),
        lambda r: r["status"] in ("completed", "failed", "timed_out", "canceled"),
        f"run {run_id} to end",
    )


def _step(client: strait.Client, run_id: str, ref: str) -> dict[str, Any]:
    return next(s for s in client.workflow_runs.list_steps(run_id) if s["step_ref"] == ref)


def _waiting(client: strait.Client, run_id: str, ref: str) -> None:
    _until(lambda: _step(client, run_id, ref)["status"], lambda s: s == "waiting", f"{ref} to wait")


# ---------------------------------------------------------------------- workflows
def test_definitions_are_created_read_listed_versioned_and_deleted(api: Api) -> None:
    client = api.client()
    created = _create(
        client, [{"step_ref": "a", "step_type": "job", "job_id": "echo"}], tags={"team": "x"}
    )
    assert created["version"] == 1
    assert created["steps"][0]["step_ref"] == "a"
    assert created["steps"][0]["on_failure"] == "fail_workflow"
    assert client.workflows.get(created["id"])["slug"] == created["slug"]
    listed = client.workflows.list(query={"project_id": PROJECT, "limit": "500"})
    assert created["id"] in [w["id"] for w in listed["data"]]
    updated = client.workflows.update(
        created["id"],
        {
            "steps": [
                {"step_ref": "a", "job_id": "echo"},
                {"step_ref": "b", "job_id": "echo", "depends_on": ["a"]},
            ]
        },
    )
    assert updated["version"] == 2
    assert updated["previous_version_id"] == created["version_id"]
    versions = client.workflows.list_versions(created["id"])["data"]
    assert [v["version"] for v in versions] == [2, 1]
    first = client.workflows.get_version(created["id"], versions[1]["id"])
    assert [s["step_ref"] for s in first["steps"]] == ["a"]
    assert client.workflows.get_graph(created["id"])["adjacency"] == {"a": ["b"], "b": []}
    checked = client.workflows.dry_run(created["id"], {})
    assert (checked["valid"], checked["step_count"]) == (True, 2)
    client.workflows.delete(created["id"])
    with pytest.raises(strait.NotFoundError, match="not found"):
        client.workflows.get(created["id"])


def test_bad_definitions_are_refused_with_the_reason(api: Api) -> None:
    client = api.client()
    cases = {
        "unknown dependency": (
            [{"step_ref": "a", "job_id": "echo", "depends_on": ["ghost"]}],
            "ghost",
        ),
        "cycle": (
            [
                {"step_ref": "a", "job_id": "echo", "depends_on": ["b"]},
                {"step_ref": "b", "job_id": "echo", "depends_on": ["a"]},
            ],
            "cycle",
        ),
        "duplicate": (
            [{"step_ref": "a", "job_id": "echo"}, {"step_ref": "a", "job_id": "echo"}],
            "a",
        ),
        "unknown type": ([{"step_ref": "a", "step_type": "teleport"}], "teleport"),
        "too many": ([{"step_ref": f"s{i}", "job_id": "echo"} for i in range(1001)], "1,000"),
    }
    for name, (steps, words) in cases.items():
        with pytest.raises(strait.ApiError) as caught:
            _create(client, steps)
        assert caught.value.status == 400, name
        assert words in str(caught.value), (name, str(caught.value))


def test_the_sdks_authoring_helpers_and_their_spellings_work(api: Api) -> None:
    client = api.client()
    slug = _slug("dsl")
    definition = define_workflow(
        WorkflowOptions(
            name=slug,
            slug=slug,
            project_id=PROJECT,
            steps=[
                job_step("a", "echo", payload={"me": "a"}),
                approval_step("ok", depends_on=["a"], approvers=["ada"]),
                wait_for_event_step("hear", "dsl.{{payload.n}}", depends_on=["ok"]),
            ],
            timezone="UTC",
        )
    )
    created = client.workflows.create(definition.to_registration_body())
    [_, ok, _] = created["steps"]
    assert ok["step_type"] == "approval"
    assert ok["approval_approvers"] == ["ada"]
    run = client.workflows.trigger(created["id"], {"payload": {"n": 5}})
    _waiting(client, run["id"], "ok")
    with pytest.raises(strait.UnauthorizedError, match="only by 'ada'"):
        client.workflow_runs.approve_step(run["id"], "ok", None)  # a key that is not ada's
    client.workflow_runs.approve_step(run["id"], "ok", {"approver": "ada"})
    _waiting(client, run["id"], "hear")
    assert client.event_triggers.get_event("dsl.5")["event_key"] == "dsl.5"
    client.event_triggers.send_event("dsl.5", {"payload": {"heard": True}})
    done = _finished(client, run["id"])
    assert done["status"] == "completed"
    assert _step(client, run["id"], "hear")["output"] == {"heard": True}


# ---------------------------------------------------------------------- runs
def test_runs_are_listed_read_and_show_their_steps(api: Api) -> None:
    client = api.client()
    workflow = _create(
        client,
        [
            {"step_ref": "a", "job_id": "echo", "payload": {"me": "a"}},
            {"step_ref": "b", "job_id": "echo", "depends_on": ["a"]},
        ],
    )
    run = client.workflows.trigger(workflow["id"], {"payload": {"x": 1}, "tags": {"env": "test"}})
    assert run["status"] in ("pending", "running", "completed")
    assert run["workflow_version"] == 1
    done = _finished(client, run["id"])
    assert done["status"] == "completed"
    assert done["tags"] == {"env": "test"}
    assert done["finished_at"] is not None
    steps = client.workflow_runs.list_steps(run["id"])
    assert [(s["step_ref"], s["status"], s["deps_required"]) for s in steps] == [
        ("a", "completed", 0),
        ("b", "completed", 1),
    ]
    assert steps[1]["output"]["parent_outputs"]["a"]["me"] == "a"
    runs = client.workflow_runs.list(
        query={"project_id": PROJECT, "status": "completed", "limit": "500"}
    )
    assert isinstance(runs, list)
    assert run["id"] in [r["id"] for r in runs]
    with pytest.raises(strait.ApiError, match="project_id is required"):
        client.workflow_runs.list()
    with pytest.raises(strait.ApiError, match="status 'done' is invalid"):
        client.workflow_runs.list(query={"project_id": PROJECT, "status": "done"})


def test_pause_resume_cancel_and_retry(api: Api) -> None:
    client = api.client()
    workflow = _create(
        client,
        [
            {"step_ref": "gate", "step_type": "approval"},
            {"step_ref": "after", "job_id": "echo", "depends_on": ["gate"]},
        ],
    )
    run = client.workflows.trigger(workflow["id"], {})
    _waiting(client, run["id"], "gate")
    client.workflow_runs.pause(run["id"])
    assert client.workflow_runs.get(run["id"])["status"] == "paused"
    client.workflow_runs.pause(run["id"])  # again: no harm
    client.workflow_runs.resume(run["id"])
    _until(
        lambda: client.workflow_runs.get(run["id"])["status"], lambda s: s == "running", "resumed"
    )
    client.workflow_runs.delete(run["id"])
    assert client.workflow_runs.get(run["id"])["status"] == "canceled"
    with pytest.raises(strait.ConflictError, match="cannot pause"):
        client.workflow_runs.pause(run["id"])
    retried = client.workflow_runs.retry(run["id"])
    assert retried["retry_of_run_id"] == run["id"]
    assert retried["triggered_by"] == "retry"
    _waiting(client, retried["id"], "gate")
    client.workflow_runs.approve_step(retried["id"], "gate", {"approver": "ada"})
    assert _finished(client, retried["id"])["status"] == "completed"


def test_step_actions_skip_force_complete_retry_and_replay(api: Api) -> None:
    client = api.client()
    workflow = _create(
        client,
        [
            {"step_ref": "gate", "step_type": "approval"},
            {"step_ref": "hear", "step_type": "wait_for_event", "event_key": "never-sent"},
            {"step_ref": "a", "job_id": "echo", "depends_on": ["gate", "hear"]},
            {"step_ref": "b", "job_id": "echo", "depends_on": ["a"]},
        ],
    )
    run = client.workflows.trigger(workflow["id"], {})
    _waiting(client, run["id"], "gate")
    client.workflow_runs.skip_step(run["id"], "gate")  # no body: the SDK cannot send a reason
    client.workflow_runs.force_complete_step(run["id"], "hear", {"result": {"by": "hand"}})
    assert _finished(client, run["id"])["status"] == "completed"
    assert _step(client, run["id"], "gate")["status"] == "skipped"
    assert _step(client, run["id"], "hear")["output"] == {"by": "hand"}
    retried = client.workflow_runs.retry_step(run["id"], "b")
    assert retried["step_run"]["step_ref"] == "b"
    assert _finished(client, run["id"])["status"] == "completed"
    assert client.workflow_runs.replay_subtree_step(run["id"], "a") == {"reset_steps": 2}
    assert _finished(client, run["id"])["status"] == "completed"
    with pytest.raises(strait.ConflictError, match="only a pending or waiting step"):
        client.workflow_runs.skip_step(run["id"], "a")
    with pytest.raises(strait.NotFoundError, match="step 'zzz' not found"):
        client.workflow_runs.skip_step(run["id"], "zzz")


def test_http_jobs_retry_408_429_5xx_and_fail_on_other_4xx(api: Api) -> None:
    client = api.client()
    workflow = _create(
        client,
        [
            {"step_ref": "ok", "job_id": f"{api.endpoint}/ok", "payload": {"n": 1}},
            {
                "step_ref": "flaky",
                "job_id": f"{api.endpoint}/flaky",
                "retry_max_attempts": 4,
                "retry_initial_delay_secs": 0,
            },
            {
                "step_ref": "bad",
                "job_id": f"{api.endpoint}/bad",
                "depends_on": ["ok", "flaky"],
                "retry_max_attempts": 3,
            },
        ],
    )
    run = client.workflows.trigger(workflow["id"], {"payload": {"from": "trigger"}})
    done = _finished(client, run["id"])
    assert done["status"] == "failed"
    assert "answered 400" in done["error"]
    steps = {s["step_ref"]: s for s in client.workflow_runs.list_steps(run["id"])}
    assert steps["ok"]["output"]["echo"] == {"from": "trigger", "n": 1}
    assert (steps["flaky"]["status"], steps["flaky"]["attempt"]) == ("completed", 4)
    assert (steps["bad"]["status"], steps["bad"]["attempt"]) == ("failed", 1)


def test_sub_workflows_return_the_childs_output(api: Api) -> None:
    client = api.client()
    child = _create(
        client,
        [{"step_ref": "add", "job_id": "add", "payload": {"a": "{{payload.n}}", "b": 1}}],
        prefix="child",
    )
    parent = _create(
        client,
        [
            {
                "step_ref": "sub",
                "step_type": "sub_workflow",
                "sub_workflow_id": child["id"],
                "payload": {"n": "{{payload.n}}"},
            }
        ],
        prefix="parent",
    )
    run = client.workflows.trigger(parent["id"], {"payload": {"n": 41}})
    assert _finished(client, run["id"])["status"] == "completed"
    assert _step(client, run["id"], "sub")["output"] == {"add": {"sum": 42}}
    [child_run] = client.workflows.list_runs(child["id"])["data"]
    assert child_run["parent_workflow_run_id"] == run["id"]
    assert child_run["parent_step_run_id"] == _step(client, run["id"], "sub")["id"]


def test_bulk_cancel_and_replay(api: Api) -> None:
    client = api.client()
    workflow = _create(client, [{"step_ref": "gate", "step_type": "approval"}])
    ids = [client.workflows.trigger(workflow["id"], {})["id"] for _ in range(100)]
    result = client.workflow_runs.bulk_cancel({"workflow_run_ids": [*ids, "nope"]})
    assert result == {"canceled": 100, "failed": 1}
    replayed = client.workflow_runs.bulk_replay({"workflow_run_ids": ids})
    assert replayed == {"replayed": 100, "failed": 0}


def test_health_and_readiness(api: Api) -> None:
    client = api.client()
    assert client.health.list()["status"] == "ok"
    assert client.health.get_ready()["status"] == "ok"


# ---------------------------------------------------------------------- errors and keys
def test_errors_carry_a_message_and_keys_are_scoped_to_their_project(api: Api) -> None:
    with pytest.raises(strait.NotFoundError, match="workflow run 'nope' not found"):
        api.client().workflow_runs.get("nope")
    with pytest.raises(strait.UnauthorizedError):
        api.client("sk_not_a_key").workflow_runs.list(query={"project_id": PROJECT})
    workflow = _create(api.client(), [{"step_ref": "a", "job_id": "echo"}])
    with pytest.raises(strait.UnauthorizedError, match="scope"):
        api.client(api.read_only).workflows.trigger(workflow["id"], {})
    with pytest.raises(strait.NotFoundError):  # another project's workflow does not exist here
        api.client(api.other).workflows.get(workflow["id"])
    with pytest.raises(strait.NotFoundError, match="project 'acme' not found"):
        api.client(api.other).workflow_runs.list(query={"project_id": PROJECT})
    with pytest.raises(strait.ApiError, match="must be a JSON object"):
        api.client().workflows.trigger(workflow["id"], "not json")  # type: ignore[arg-type]
