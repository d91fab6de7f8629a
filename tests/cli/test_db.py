"""``stepstone db check`` and ``db upgrade`` for operators."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from stepstone.cli.main import app


def test_check_fails_until_upgrade_then_passes(tmp_path: Path) -> None:
    runner = CliRunner()
    db = str(tmp_path / "ops.db")
    checked = runner.invoke(app, ["db", "check", "--db", db])
    assert checked.exit_code == 1
    assert "none (empty database)" in checked.stdout
    assert "stepstone db upgrade" in checked.stderr

    upgraded = runner.invoke(app, ["db", "upgrade", "--db", db])
    assert upgraded.exit_code == 0
    assert "up to date" in upgraded.stdout

    checked = runner.invoke(app, ["db", "check", "--db", db])
    assert checked.exit_code == 0
    assert "ok" in checked.stdout


def test_check_reports_an_unreachable_database_in_one_line() -> None:
    result = CliRunner().invoke(
        app, ["db", "check", "--db", "postgresql://nobody@127.0.0.1:1/none"]
    )
    assert result.exit_code == 1
    assert "the database is unavailable" in result.stderr
    assert "Traceback" not in result.stderr
