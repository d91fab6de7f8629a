"""`stepstone keys` and `--tenant` against a real SQLite file."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stepstone.cli.main import app
from stepstone.domain.errors import AuthenticationError
from stepstone.domain.records import ApiKey
from stepstone.engine.keys import KeyService
from stepstone.storage import open_store

FLOW = """
from stepstone import WorkflowEntrypoint


class Hello(WorkflowEntrypoint):
    async def run(self, event, step):
        return await step.do("hi", lambda: "hi")
"""


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "keys.db")


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def authenticate(db: str, token: str) -> ApiKey:
    async def go() -> ApiKey:
        store = await open_store(db)
        try:
            return await KeyService(store).authenticate(token)
        finally:
            await store.close()

    return asyncio.run(go())


def test_create_prints_the_key_alone_and_it_authenticates(db: str) -> None:
    code, out, err = invoke(
        "keys", "create", "--tenant", "acme", "--scopes", "workflows:read,workflows:write",
        "--name", "ci", "--db", db,
    )  # fmt: skip
    assert code == 0, err
    token = out.removesuffix("\n")
    assert out == token + "\n"
    assert re.fullmatch(r"sk_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", token)
    assert "only its hash is kept" in err
    assert token not in err
    key = authenticate(db, token)
    assert (key.tenant, key.name, key.scopes) == (
        "acme",
        "ci",
        ("workflows:read", "workflows:write"),
    )


def test_list_shows_keys_without_secrets_and_revoke_disables_them(db: str) -> None:
    token = invoke("keys", "create", "--tenant", "acme", "--scopes", "admin", "--db", db)[1].strip()
    invoke("keys", "create", "--tenant", "other", "--scopes", "workflows:read", "--db", db)
    key_id, secret = token.split("_", 2)[1:]

    code, out, _ = invoke("keys", "list", "--tenant", "acme", "--json", "--db", db)
    assert code == 0
    [listed] = json.loads(out)
    assert (listed["id"], listed["tenant"], listed["scopes"]) == (key_id, "acme", ["admin"])
    assert listed["revoked_at"] is None
    assert secret not in out

    code, out, _ = invoke("keys", "list", "--db", db)
    assert code == 0
    assert key_id in out
    assert "other" in out
    assert secret not in out

    code, out, _ = invoke("keys", "revoke", key_id, "--db", db)
    assert (code, out.strip()) == (0, f"{key_id}: revoked")
    with pytest.raises(AuthenticationError):
        authenticate(db, token)
    [listed] = json.loads(invoke("keys", "list", "--tenant", "acme", "--json", "--db", db)[1])
    assert listed["revoked_at"] is not None


def test_bad_key_requests_get_one_clear_line(db: str) -> None:
    code, out, err = invoke("keys", "create", "--tenant", "acme", "--scopes", "root", "--db", db)
    assert (code, out) == (1, "")
    assert "unknown scope 'root'" in err
    code, out, err = invoke("keys", "create", "--tenant", "a b", "--scopes", "admin", "--db", db)
    assert (code, out) == (2, "")
    assert "may contain only letters" in err
    code, _, err = invoke("keys", "create", "--scopes", "admin", "--db", db)
    assert code == 2
    assert "--tenant" in err
    code, _, err = invoke("keys", "revoke", "0123456789ab", "--db", db)
    assert code == 1
    assert "API key '0123456789ab' not found" in err
    assert "Traceback" not in err


def test_tenants_do_not_see_each_others_instances(db: str, tmp_path: Path) -> None:
    source = tmp_path / "hello.py"
    source.write_text(FLOW)
    for tenant in ("a", "b"):
        assert invoke("deploy", str(source), "--tenant", tenant, "--db", db)[0] == 0
    code, out, _ = invoke("run", "hello", "--id", "only-a", "--tenant", "a", "--db", db)
    assert (code, out.strip()) == (0, "only-a")

    code, out, _ = invoke("instances", "show", "hello", "only-a", "--tenant", "a", "--db", db)
    assert code == 0
    for args in (
        ("instances", "show", "hello", "only-a"),
        ("instances", "pause", "hello", "only-a"),
        ("events", "send", "hello", "only-a", "ping"),
    ):
        code, _, err = invoke(*args, "--tenant", "b", "--db", db)
        assert code == 1
        assert "not found" in err
    code, out, _ = invoke("instances", "list", "hello", "--json", "--tenant", "b", "--db", db)
    assert (code, json.loads(out)) == (0, [])
    # Without --tenant, commands act for the local tenant, which has no such workflow.
    code, _, err = invoke("instances", "show", "hello", "only-a", "--db", db)
    assert code == 1
    assert "not found" in err
    code, out, _ = invoke("instances", "pause", "hello", "only-a", "--tenant", "a", "--db", db)
    assert (code, out.strip()) == (0, "only-a: paused")
