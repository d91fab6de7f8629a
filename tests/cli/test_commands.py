"""The ``stepstone`` command against a real SQLite file, without a server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stepstone.cli.main import app

FLOW = """
from stepstone import WorkflowEntrypoint


class ApprovalFlow(WorkflowEntrypoint):
    async def run(self, event, step):
        await step.do("prepare", lambda: 1)
        got = await step.wait_for_event("approval", type="approved", timeout="1 hour")
        return got.payload
"""


@pytest.fixture
def cli(tmp_path: Path) -> tuple[CliRunner, str, Path]:
    source = tmp_path / "approval.py"
    source.write_text(FLOW)
    return CliRunner(), str(tmp_path / "cli.db"), source


def invoke(runner: CliRunner, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_deploy_names_the_workflow_in_kebab_case(cli: tuple[CliRunner, str, Path]) -> None:
    runner, db, source = cli
    code, _, err = invoke(runner, "deploy", str(source), "--db", db)
    assert code == 0
    assert "deployed approval-flow" in err
    assert "version 1" in err
    code, _, err = invoke(runner, "deploy", str(source), "--name", "approvals", "--db", db)
    assert code == 0
    assert "deployed approvals" in err


def test_deploy_refuses_a_file_without_workflows(cli: tuple[CliRunner, str, Path]) -> None:
    runner, db, source = cli
    source.write_text("x = 1\n")
    code, _, err = invoke(runner, "deploy", str(source), "--db", db)
    assert code == 1
    assert "defines no WorkflowEntrypoint subclass" in err
    assert "Traceback" not in err


def test_run_list_show_and_status_actions(cli: tuple[CliRunner, str, Path]) -> None:
    runner, db, source = cli
    assert invoke(runner, "deploy", str(source), "--db", db)[0] == 0
    code, out, _ = invoke(
        runner, "run", "approval-flow", "--id", "a-1", "--params", '{"n": 1}', "--db", db
    )
    assert (code, out.strip()) == (0, "a-1")

    code, out, _ = invoke(runner, "instances", "list", "approval-flow", "--json", "--db", db)
    listed = json.loads(out)
    assert [(i["id"], i["status"], i["params"]) for i in listed] == [("a-1", "queued", {"n": 1})]

    code, out, _ = invoke(runner, "instances", "pause", "approval-flow", "a-1", "--db", db)
    assert (code, out.strip()) == (0, "a-1: paused")
    code, out, _ = invoke(runner, "instances", "resume", "approval-flow", "a-1", "--db", db)
    assert (code, out.strip()) == (0, "a-1: queued")
    code, out, _ = invoke(runner, "instances", "terminate", "approval-flow", "a-1", "--db", db)
    assert (code, out.strip()) == (0, "a-1: terminated")
    code, _, err = invoke(runner, "instances", "resume", "approval-flow", "a-1", "--db", db)
    assert code == 1
    assert "cannot resume an instance that is terminated" in err

    code, out, _ = invoke(runner, "instances", "show", "approval-flow", "a-1", "--json", "--db", db)
    shown = json.loads(out)
    assert shown["status"] == "terminated"
    assert shown["steps"] == []
    code, out, _ = invoke(runner, "instances", "show", "approval-flow", "a-1", "--db", db)
    assert code == 0
    assert "terminated" in out


def test_bad_input_gets_one_clear_line(cli: tuple[CliRunner, str, Path]) -> None:
    runner, db, source = cli
    assert invoke(runner, "deploy", str(source), "--db", db)[0] == 0
    code, _, err = invoke(runner, "run", "approval-flow", "--params", "{nope", "--db", db)
    assert code == 2
    assert "--params is not valid JSON" in err
    code, _, err = invoke(runner, "run", "no-such-flow", "--db", db)
    assert code == 1
    assert "workflow 'no-such-flow' not found" in err
    code, _, err = invoke(runner, "run", "approval-flow", "--id", "bad id!", "--db", db)
    assert code == 1
    assert "may contain only letters" in err
    code, _, err = invoke(
        runner, "events", "send", "approval-flow", "nobody", "approved", "--db", db
    )
    assert code == 1
    assert "instance 'nobody'" in err
    code, _, err = invoke(runner, "dev", "/no/such/path", "--db", db)
    assert code == 2
    assert "does not exist" in err
    for text in (err,):
        assert "Traceback" not in text


def test_duplicate_instance_id_is_refused(cli: tuple[CliRunner, str, Path]) -> None:
    runner, db, source = cli
    assert invoke(runner, "deploy", str(source), "--db", db)[0] == 0
    assert invoke(runner, "run", "approval-flow", "--id", "same", "--db", db)[0] == 0
    code, _, err = invoke(runner, "run", "approval-flow", "--id", "same", "--db", db)
    assert code == 1
    assert "already exists" in err
