"""Schemathesis against the published ``/openapi.json``: no 5xx, responses fit the schema.

The app runs in process with open access (``stepstone dev``'s mode), over a store holding two
deployed workflows and an instance, so generated requests reach past the 404s: half of the
generated path parameters are swapped for names and ids that exist.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import CheckContext
from schemathesis.specs.openapi.checks import response_schema_conformance

from stepstone.api import create_app
from stepstone.engine import DEFAULT_TENANT, Engine
from tests.api import flows

schema = schemathesis.pytest.from_fixture("cloudflare_schema").include(path_regex="^/client/v4/")


@pytest.fixture
async def seeded(engine: Engine) -> dict[str, str]:
    """Path parameters that name things that exist in the local tenant."""
    await engine.deploy_class(flows.Echo, tenant=DEFAULT_TENANT)
    deployed = await engine.deploy_class(flows.Approval, tenant=DEFAULT_TENANT)
    await engine.create_instance("approval", instance_id="there", tenant=DEFAULT_TENANT)
    return {
        "account_id": "any",
        "workflow_name": "approval",
        "instance_id": "there",
        "version_id": deployed.version.id,
        "script_name": "flows",
    }


@pytest.fixture
def cloudflare_schema(engine: Engine, seeded: dict[str, str]) -> schemathesis.BaseSchema:
    app = create_app(engine, open_access=True)
    loaded = schemathesis.openapi.from_asgi("/openapi.json", app)

    @loaded.hook
    def map_case(context: schemathesis.HookContext, case: schemathesis.Case) -> schemathesis.Case:
        # Deleting the seeded workflow or terminating all of it would leave little to find;
        # other cases flip a coin (derived from the case, so a failure replays) to aim at
        # things that exist.
        destructive = case.method.upper() == "DELETE" or case.path.endswith("/batch/terminate")
        if not destructive and zlib.crc32(repr(case.path_parameters).encode()) % 2:
            case.path_parameters = {k: seeded.get(k, v) for k, v in case.path_parameters.items()}
        return case

    return loaded


def cloudflare_envelope(ctx: CheckContext, response: schemathesis.Response, case: Any) -> None:
    """Every answer is Cloudflare's envelope; failures carry one error with a code."""
    body = json.loads(response.content)
    assert isinstance(body, dict), body
    assert {"success", "errors", "messages", "result"} <= set(body), body
    if response.status_code >= 400:
        assert body["success"] is False, body
        assert body["result"] is None, body
        [error] = body["errors"]
        assert isinstance(error["code"], int), body
        assert isinstance(error["message"], str), body
        assert error["message"], body
    else:
        assert body["success"] is True, body


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_no_server_error_and_responses_fit_the_schema(case: schemathesis.Case) -> None:
    case.call_and_validate(
        checks=[
            schemathesis.checks.not_a_server_error,
            response_schema_conformance,
            cloudflare_envelope,
        ]
    )
