"""The official ``cloudflare`` SDK, unchanged, against a real ``stepstone serve`` process.

One server per module; every test makes its own workflows (PUT from the uploaded script), so
tests share the server without seeing each other's instances.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cloudflare
import pytest
from cloudflare.types.workflows import InstanceGetResponse
from cloudflare.types.workflows.instance_get_response import (
    StepUnionMember0,
    StepUnionMember2,
    StepUnionMember3,
)

from tests.e2e.process import Server, stepstone

pytestmark = pytest.mark.slow

ACCOUNT = "acme"
FLOWS = Path(__file__).with_name("flows.py")
UPLOADED = b"""
from stepstone import WorkflowEntrypoint


class Uploaded(WorkflowEntrypoint):
    async def run(self, event, step):
        return await step.do("shout", lambda: event.payload["word"].upper())
"""


@dataclass(frozen=True)
class Keys:
    admin: str
    read_only: str
    other_tenant: str


@dataclass(frozen=True)
class Api:
    server: Server
    keys: Keys

    def client(self, token: str) -> cloudflare.Cloudflare:
        return cloudflare.Cloudflare(
            api_token=token, base_url=f"{self.server.url}/client/v4", max_retries=0
        )


def _key(db: str, tenant: str, scopes: str) -> str:
    created = stepstone("keys", "create", "--tenant", tenant, "--scopes", scopes, "--db", db)
    key = created.stdout.strip()
    assert key.startswith("sk_"), created.stdout
    assert "\n" not in key  # the key alone on stdout
    return key


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    where = tmp_path_factory.mktemp("cloudflare-sdk")
    db = str(where / "stepstone.db")
    keys = Keys(
        admin=_key(db, ACCOUNT, "admin"),
        read_only=_key(db, ACCOUNT, "workflows:read"),
        other_tenant=_key(db, "globex", "admin"),
    )
    stepstone("deploy", str(FLOWS), "--tenant", ACCOUNT, "--db", db)
    server = Server(db, where / "server.log", env={"STEPSTONE_POLL_MS": "50"})
    try:
        yield Api(server, keys)
    finally:
        assert server.stop() == 0, server.log.read_text()


@pytest.fixture(scope="module")
def client(api: Api) -> cloudflare.Cloudflare:
    return api.client(api.keys.admin)


_names = itertools.count(1)


def new_workflow(client: cloudflare.Cloudflare, class_name: str, script: str = "flows") -> str:
    """A workflow of its own for one test, bound to ``class_name`` of an uploaded script."""
    name = f"{class_name.lower()}-{next(_names)}"
    client.workflows.update(name, account_id=ACCOUNT, class_name=class_name, script_name=script)
    return name


def wait_status(
    client: cloudflare.Cloudflare,
    workflow: str,
    instance_id: str,
    status: str,
    *,
    timeout: float = 15,
) -> InstanceGetResponse:
    """Poll the instance until it shows ``status``, failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        got = client.workflows.instances.get(
            instance_id, account_id=ACCOUNT, workflow_name=workflow
        )
        if got.status == status:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"{instance_id} is {got.status}, not {status}, after {timeout}s")
        time.sleep(0.02)


def step_outputs(instance: InstanceGetResponse) -> dict[str, str | None]:
    return {s.name: s.output for s in instance.steps if isinstance(s, StepUnionMember0)}


# ---------------------------------------------------------------------- workflows
def test_workflow_update_get_list_delete(client: cloudflare.Cloudflare) -> None:
    created = client.workflows.update(
        "sdk-lifecycle",
        account_id=ACCOUNT,
        class_name="Echo",
        script_name="flows",
        schedules=[{"cron": "0 0 1 1 *"}],
    )
    assert created.name == "sdk-lifecycle"
    assert (created.class_name, created.script_name) == ("Echo", "flows")
    assert (created.is_deleted, created.terminator_running) == (0, 0)

    got = client.workflows.get("sdk-lifecycle", account_id=ACCOUNT)
    assert got.id == created.id
    assert got.instances["complete"] == 0
    assert set(got.instances) >= {"queued", "running", "paused", "errored", "complete"}
    [schedule] = got.schedules or []
    assert schedule.cron == "0 0 1 1 *"
    next_run = datetime.fromisoformat(schedule.next_instance)
    assert (next_run.month, next_run.day, next_run.hour, next_run.minute) == (1, 1, 0, 0)
    assert next_run > datetime.now(UTC)

    modified = client.workflows.update(
        "sdk-lifecycle", account_id=ACCOUNT, class_name="Chain", script_name="flows"
    )
    assert modified.id == created.id
    assert modified.version_id != created.version_id
    assert client.workflows.get("sdk-lifecycle", account_id=ACCOUNT).class_name == "Chain"

    everything = [w.name for w in client.workflows.list(account_id=ACCOUNT, per_page=2)]
    assert "sdk-lifecycle" in everything
    assert {"echo", "chain", "approval", "flaky", "secret"} <= set(everything)
    assert len(everything) == len(set(everything))
    found = client.workflows.list(account_id=ACCOUNT, search="lifecyc")
    assert [w.name for w in found] == ["sdk-lifecycle"]

    deleted = client.workflows.delete("sdk-lifecycle", account_id=ACCOUNT)
    assert (deleted.status, deleted.success) == ("ok", True)
    with pytest.raises(cloudflare.NotFoundError):
        client.workflows.get("sdk-lifecycle", account_id=ACCOUNT)
    assert "sdk-lifecycle" not in [w.name for w in client.workflows.list(account_id=ACCOUNT)]


def test_a_script_uploaded_over_http_runs(client: cloudflare.Cloudflare) -> None:
    uploaded = client.put(
        f"/accounts/{ACCOUNT}/workers/scripts/uploaded", cast_to=object, content=UPLOADED
    )
    assert isinstance(uploaded, dict)
    assert uploaded["success"] is True
    assert uploaded["result"]["id"] == "uploaded"
    workflow = new_workflow(client, "Uploaded", script="uploaded")
    client.workflows.instances.create(
        workflow, account_id=ACCOUNT, instance_id="up-1", params=json.dumps({"word": "hi"})
    )
    assert wait_status(client, workflow, "up-1", "complete").output == "HI"


# ---------------------------------------------------------------------- instances
def test_create_get_and_step_output(client: cloudflare.Cloudflare) -> None:
    workflow = new_workflow(client, "Echo")
    version_id = client.workflows.update(
        workflow, account_id=ACCOUNT, class_name="Echo", script_name="flows"
    ).version_id
    created = client.workflows.instances.create(
        workflow, account_id=ACCOUNT, instance_id="order-1", params=json.dumps({"n": 21})
    )
    assert created.id == "order-1"
    assert created.status in ("queued", "running", "complete")
    assert created.version_id == version_id
    assert created.workflow_id == client.workflows.get(workflow, account_id=ACCOUNT).id

    done = wait_status(client, workflow, "order-1", "complete")
    assert done.output == {"doubled": 42}
    assert done.params == {"n": 21}
    assert done.success is True
    assert done.error is None
    assert done.trigger.source == "api"
    assert done.version_id == version_id
    assert done.queued <= (done.start or done.queued) <= (done.end or done.queued)
    assert done.step_count == 1
    [step] = done.steps
    assert isinstance(step, StepUnionMember0)
    assert (step.name, step.type, step.success, step.output) == ("double", "step", True, "42")
    assert [a.success for a in step.attempts] == [True]

    output = client.workflows.instances.step(
        "order-1", account_id=ACCOUNT, workflow_name=workflow, name="double", type="step"
    )
    assert (output.status, output.output, output.error) == ("complete", 42, None)
    assert client.workflows.get(workflow, account_id=ACCOUNT).instances["complete"] == 1


def test_get_orders_steps_and_simple_leaves_them_out(client: cloudflare.Cloudflare) -> None:
    workflow = new_workflow(client, "Chain")
    client.workflows.instances.create(workflow, account_id=ACCOUNT, instance_id="c-1")
    done = wait_status(client, workflow, "c-1", "complete")
    assert [s.name for s in done.steps if isinstance(s, StepUnionMember0)] == [
        "first",
        "second",
        "third",
    ]
    newest_first = client.workflows.instances.get(
        "c-1", account_id=ACCOUNT, workflow_name=workflow, order="desc"
    )
    assert [s.name for s in newest_first.steps if isinstance(s, StepUnionMember0)] == [
        "third",
        "second",
        "first",
    ]
    simple = client.workflows.instances.get(
        "c-1", account_id=ACCOUNT, workflow_name=workflow, simple="true"
    )
    assert (simple.steps, simple.step_count, simple.status) == ([], 3, "complete")


def test_retried_step_shows_each_attempt(client: cloudflare.Cloudflare) -> None:
    workflow = new_workflow(client, "Flaky")
    client.workflows.instances.create(workflow, account_id=ACCOUNT, instance_id="f-1")
    done = wait_status(client, workflow, "f-1", "complete")
    assert done.output == 3
    [step] = done.steps
    assert isinstance(step, StepUnionMember0)
    assert step.name == "shaky"
    assert [a.success for a in step.attempts] == [False, False, True]
    assert [a.error.message if a.error else None for a in step.attempts] == [
        "attempt 1 failed",
        "attempt 2 failed",
        None,
    ]
    assert {a.error.name for a in step.attempts if a.error} == {"RuntimeError"}
    assert step.config.retries.limit == 2

    def attempt(number: int) -> tuple[str | None, object]:
        got = client.workflows.instances.step(
            "f-1",
            account_id=ACCOUNT,
            workflow_name=workflow,
            name="shaky",
            type="step",
            attempt=number,
        )
        return (got.error.message if got.error else None), got.output

    assert attempt(1) == ("attempt 1 failed", None)
    assert attempt(3) == (None, 3)


def test_sensitive_output_is_redacted(client: cloudflare.Cloudflare) -> None:
    workflow = new_workflow(client, "Secret")
    client.workflows.instances.create(workflow, account_id=ACCOUNT, instance_id="s-1")
    done = wait_status(client, workflow, "s-1", "complete")
    assert done.output == {"length": 12}
    assert step_outputs(done) == {"token": "[REDACTED]"}
    step = client.workflows.instances.step(
        "s-1", account_id=ACCOUNT, workflow_name=workflow, name="token", type="step"
    )
    assert step.output == "[REDACTED]"


def test_bulk_create_pagination_and_status_filter(client: cloudflare.Cloudflare) -> None:
    workflow = new_workflow(client, "Echo")
    bulk = client.workflows.instances.bulk(
        workflow,
        account_id=ACCOUNT,
        body=[
            {"instance_id": "b-1", "params": json.dumps({"n": 1})},
            {"instance_id": "b-2", "params": json.dumps({"n": 2})},
            {"instance_id": "b-3"},
            {"params": json.dumps({"n": 4})},
            {},
        ],
    )
    created = [i.id for i in bulk]
    assert created[:3] == ["b-1", "b-2", "b-3"]
    assert len(set(created)) == 5
    assert {i.workflow_id for i in bulk} == {client.workflows.get(workflow, account_id=ACCOUNT).id}
    for instance_id in created:
        wait_status(client, workflow, instance_id, "complete")
    assert client.workflows.instances.get(
        "b-2", account_id=ACCOUNT, workflow_name=workflow
    ).output == {"doubled": 4}

    # auto-iteration walks page after page (two per page) until an empty one
    walked = [
        i.id for i in client.workflows.instances.list(workflow, account_id=ACCOUNT, per_page=2)
    ]
    assert sorted(walked) == sorted(created)

    second = client.workflows.instances.list(workflow, account_id=ACCOUNT, page=2, per_page=2)
    assert len(second.result) == 2
    assert second.result_info is not None
    assert (second.result_info.page, second.result_info.per_page) == (2, 2)
    assert second.result_info.total_count == 5
    last = client.workflows.instances.list(workflow, account_id=ACCOUNT, page=3, per_page=2)
    assert len(last.result) == 1

    complete = client.workflows.instances.list(workflow, account_id=ACCOUNT, status="complete")
    assert sorted(i.id for i in complete) == sorted(created)
    assert {i.status for i in complete} == {"complete"}
    assert (
        list(client.workflows.instances.list(workflow, account_id=ACCOUNT, status="errored")) == []
    )

    since = datetime.now(UTC) - timedelta(hours=1)
    assert (
        len(list(client.workflows.instances.list(workflow, account_id=ACCOUNT, date_start=since)))
        == 5
    )
    naive_past = datetime(2020, 1, 1)
    assert (
        list(client.workflows.instances.list(workflow, account_id=ACCOUNT, date_end=naive_past))
        == []
    )


# ---------------------------------------------------------------------- status and events
def test_pause_resume_and_an_event_complete_a_waiting_instance(
    client: cloudflare.Cloudflare,
) -> None:
    workflow = new_workflow(client, "Approval")
    client.workflows.instances.create(workflow, account_id=ACCOUNT, instance_id="a-1")
    waiting = wait_status(client, workflow, "a-1", "waiting")
    wait = waiting.steps[-1]
    assert isinstance(wait, StepUnionMember3)
    assert (wait.name, wait.type, wait.finished) == ("approval", "waitForEvent", False)

    paused = client.workflows.instances.status.edit(
        "a-1", account_id=ACCOUNT, workflow_name=workflow, status="pause"
    )
    assert paused.status == "paused"
    assert paused.timestamp.tzinfo is not None
    assert client.workflows.get(workflow, account_id=ACCOUNT).instances["paused"] == 1
    resumed = client.workflows.instances.status.edit(
        "a-1", account_id=ACCOUNT, workflow_name=workflow, status="resume"
    )
    assert resumed.status == "queued"
    wait_status(client, workflow, "a-1", "waiting")

    sent = client.workflows.instances.events.create(
        "approved",
        account_id=ACCOUNT,
        workflow_name=workflow,
        instance_id="a-1",
        body={"user": "ada"},
    )
    assert sent.instance_id == "a-1"
    done = wait_status(client, workflow, "a-1", "complete")
    assert done.output == {"by": "ada"}
    event = client.workflows.instances.step(
        "a-1", account_id=ACCOUNT, workflow_name=workflow, name="approval", type="waitForEvent"
    )
    assert (event.status, event.output) == ("complete", {"user": "ada"})


def test_terminate_then_nothing_but_restart(client: cloudflare.Cloudflare) -> None:
    workflow = new_workflow(client, "Approval")
    client.workflows.instances.create(workflow, account_id=ACCOUNT, instance_id="t-1")
    wait_status(client, workflow, "t-1", "waiting")
    ended = client.workflows.instances.status.edit(
        "t-1", account_id=ACCOUNT, workflow_name=workflow, status="terminate"
    )
    assert ended.status == "terminated"
    got = client.workflows.instances.get("t-1", account_id=ACCOUNT, workflow_name=workflow)
    assert (got.status, got.success) == ("terminated", False)
    assert isinstance(got.steps[-1], StepUnionMember2)
    assert got.steps[-1].trigger.source == "api"
    for action in ("pause", "resume", "terminate"):
        with pytest.raises(cloudflare.ConflictError):
            client.workflows.instances.status.edit(
                "t-1", account_id=ACCOUNT, workflow_name=workflow, status=action
            )
    with pytest.raises(cloudflare.BadRequestError):
        client.workflows.instances.events.create(
            "approved", account_id=ACCOUNT, workflow_name=workflow, instance_id="t-1", body={}
        )
    restarted = client.workflows.instances.status.edit(
        "t-1", account_id=ACCOUNT, workflow_name=workflow, status="restart"
    )
    assert restarted.status == "queued"
    wait_status(client, workflow, "t-1", "waiting")


def test_terminate_with_rollback_runs_the_compensations(client: cloudflare.Cloudflare) -> None:
    workflow = new_workflow(client, "Refundable")
    client.workflows.instances.create(workflow, account_id=ACCOUNT, instance_id="r-1")
    wait_status(client, workflow, "r-1", "waiting")
    client.workflows.instances.status.edit(
        "r-1", account_id=ACCOUNT, workflow_name=workflow, status="terminate", rollback=True
    )
    done = wait_status(client, workflow, "r-1", "terminated")
    assert done.rollback is not None
    assert done.rollback.outcome == "complete"
    rollbacks = [s for s in done.steps if isinstance(s, StepUnionMember0) and s.type == "rollback"]
    assert [(s.name, s.output) for s in rollbacks] == [("rollback:charge", "refunded 100")]


def test_restart_from_a_step_keeps_the_steps_before_it(client: cloudflare.Cloudflare) -> None:
    workflow = new_workflow(client, "Chain")
    client.workflows.instances.create(workflow, account_id=ACCOUNT, instance_id="chain-1")
    before = step_outputs(wait_status(client, workflow, "chain-1", "complete"))

    restarted = client.workflows.instances.status.edit(
        "chain-1",
        account_id=ACCOUNT,
        workflow_name=workflow,
        status="restart",
        from_={"name": "second", "count": 1, "type": "do"},
    )
    assert restarted.status == "queued"
    after = step_outputs(wait_status(client, workflow, "chain-1", "complete"))
    assert after["first"] == before["first"]
    assert after["second"] != before["second"]
    assert after["third"] != before["third"]

    client.workflows.instances.status.edit(
        "chain-1", account_id=ACCOUNT, workflow_name=workflow, status="restart"
    )
    again = step_outputs(wait_status(client, workflow, "chain-1", "complete"))
    assert all(again[name] != after[name] for name in ("first", "second", "third"))

    with pytest.raises(cloudflare.NotFoundError):
        client.workflows.instances.status.edit(
            "chain-1",
            account_id=ACCOUNT,
            workflow_name=workflow,
            status="restart",
            from_={"name": "no-such-step"},
        )


# ---------------------------------------------------------------------- versions
def test_versions_list_get_and_graph(client: cloudflare.Cloudflare) -> None:
    workflow = new_workflow(client, "Echo")
    second = client.workflows.update(
        workflow, account_id=ACCOUNT, class_name="Chain", script_name="flows"
    )
    workflow_id = client.workflows.get(workflow, account_id=ACCOUNT).id
    versions = list(client.workflows.versions.list(workflow, account_id=ACCOUNT))
    assert len(versions) == 2
    assert {v.class_name for v in versions} == {"Echo", "Chain"}
    assert {v.workflow_id for v in versions} == {workflow_id}
    assert {v.language for v in versions} == {"python"}
    assert all(v.limits is not None and v.limits.steps for v in versions)
    paged = list(client.workflows.versions.list(workflow, account_id=ACCOUNT, per_page=1))
    assert sorted(v.id for v in paged) == sorted(v.id for v in versions)

    got = client.workflows.versions.get(
        second.version_id, account_id=ACCOUNT, workflow_name=workflow
    )
    assert (got.id, got.class_name, got.workflow_id) == (second.version_id, "Chain", workflow_id)
    assert got.has_dag is False
    graph = client.workflows.versions.graph(
        second.version_id, account_id=ACCOUNT, workflow_name=workflow
    )
    assert graph.id == second.version_id
    assert graph.graph.workflow.class_name == "Chain"


# ---------------------------------------------------------------------- errors
def test_unknown_things_are_not_found(client: cloudflare.Cloudflare) -> None:
    workflow = new_workflow(client, "Echo")
    with pytest.raises(cloudflare.NotFoundError) as unknown:
        client.workflows.get("no-such-workflow", account_id=ACCOUNT)
    assert unknown.value.body == {
        "success": False,
        "errors": [{"code": 10404, "message": "workflow 'no-such-workflow' not found"}],
        "messages": [],
        "result": None,
    }
    with pytest.raises(cloudflare.NotFoundError):
        client.workflows.instances.create("no-such-workflow", account_id=ACCOUNT)
    with pytest.raises(cloudflare.NotFoundError):
        client.workflows.instances.get("nobody", account_id=ACCOUNT, workflow_name=workflow)
    with pytest.raises(cloudflare.NotFoundError):
        client.workflows.instances.events.create(
            "approved", account_id=ACCOUNT, workflow_name=workflow, instance_id="nobody", body={}
        )
    with pytest.raises(cloudflare.NotFoundError):
        client.workflows.versions.get("no-such-version", account_id=ACCOUNT, workflow_name=workflow)
    with pytest.raises(cloudflare.NotFoundError):
        client.workflows.versions.graph(
            "no-such-version", account_id=ACCOUNT, workflow_name=workflow
        )
    with pytest.raises(cloudflare.NotFoundError):
        client.workflows.delete("no-such-workflow", account_id=ACCOUNT)


def test_bad_input_is_a_bad_request(client: cloudflare.Cloudflare) -> None:
    workflow = new_workflow(client, "Echo")
    for bad_id in ("has space", "-leading-dash", "x" * 101, "sl/ash"):
        with pytest.raises(cloudflare.BadRequestError):
            client.workflows.instances.create(workflow, account_id=ACCOUNT, instance_id=bad_id)
    with pytest.raises(cloudflare.BadRequestError) as bad_json:
        client.post(
            f"/accounts/{ACCOUNT}/workflows/{workflow}/instances",
            cast_to=object,
            content=b'{"instance_id": ',
            options={"headers": {"Content-Type": "application/json"}},
        )
    assert bad_json.value.body is not None
    assert "JSON" in json.dumps(bad_json.value.body)
    oversize = json.dumps({"blob": "x" * (1024 * 1024)})
    with pytest.raises(cloudflare.BadRequestError) as too_big:
        client.workflows.instances.create(workflow, account_id=ACCOUNT, params=oversize)
    assert "limit" in str(too_big.value)
    client.workflows.instances.create(workflow, account_id=ACCOUNT, instance_id="fine")
    with pytest.raises(cloudflare.BadRequestError):
        client.workflows.instances.status.edit(
            "fine",
            account_id=ACCOUNT,
            workflow_name=workflow,
            status="explode",  # type: ignore[arg-type]
        )
    with pytest.raises(cloudflare.BadRequestError):
        client.workflows.update(
            workflow, account_id=ACCOUNT, class_name="Nope", script_name="flows"
        )
    with pytest.raises(cloudflare.BadRequestError):
        client.workflows.update(workflow, account_id=ACCOUNT, class_name="Echo", script_name="nope")
    # nothing above created anything beyond the one good instance
    assert [i.id for i in client.workflows.instances.list(workflow, account_id=ACCOUNT)] == ["fine"]


def test_conflicts(client: cloudflare.Cloudflare) -> None:
    workflow = new_workflow(client, "Echo")
    client.workflows.instances.create(workflow, account_id=ACCOUNT, instance_id="twice")
    with pytest.raises(cloudflare.ConflictError):
        client.workflows.instances.create(workflow, account_id=ACCOUNT, instance_id="twice")
    wait_status(client, workflow, "twice", "complete")
    with pytest.raises(cloudflare.ConflictError) as illegal:
        client.workflows.instances.status.edit(
            "twice", account_id=ACCOUNT, workflow_name=workflow, status="resume"
        )
    assert illegal.value.status_code == 409
    assert "complete" in str(illegal.value)


def test_keys_and_tenants(api: Api, client: cloudflare.Cloudflare) -> None:
    workflow = new_workflow(client, "Echo")
    nobody = api.client("sk_000000000000_not-a-real-secret")
    with pytest.raises(cloudflare.AuthenticationError):
        nobody.workflows.list(account_id=ACCOUNT)
    with pytest.raises(cloudflare.AuthenticationError):
        client.workflows.get(
            workflow, account_id=ACCOUNT, extra_headers={"Authorization": cloudflare.Omit()}
        )

    reader = api.client(api.keys.read_only)
    assert reader.workflows.get(workflow, account_id=ACCOUNT).name == workflow
    with pytest.raises(cloudflare.PermissionDeniedError):
        reader.workflows.instances.create(workflow, account_id=ACCOUNT)
    with pytest.raises(cloudflare.PermissionDeniedError):
        reader.workflows.update(
            workflow, account_id=ACCOUNT, class_name="Echo", script_name="flows"
        )
    with pytest.raises(cloudflare.PermissionDeniedError):
        reader.workflows.delete(workflow, account_id=ACCOUNT)

    stranger = api.client(api.keys.other_tenant)
    with pytest.raises(cloudflare.NotFoundError):
        stranger.workflows.get(workflow, account_id=ACCOUNT)
    with pytest.raises(cloudflare.NotFoundError):
        stranger.workflows.instances.create(workflow, account_id=ACCOUNT)
    with pytest.raises(cloudflare.NotFoundError):
        stranger.workflows.get(workflow, account_id="globex")
    assert list(stranger.workflows.list(account_id="globex")) == []
    assert list(client.workflows.instances.list(workflow, account_id=ACCOUNT)) == []
