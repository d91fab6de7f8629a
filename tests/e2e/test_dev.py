"""``stepstone dev examples/``, the README's first command: deploys, serves, redeploys."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.e2e.process import Server, stepstone, wait_for

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).parents[2] / "examples"


def test_dev_deploys_the_examples_and_redeploys_on_change(tmp_path: Path) -> None:
    examples = tmp_path / "examples"
    shutil.copytree(EXAMPLES, examples)
    db = str(tmp_path / "dev.db")
    server = Server(db, tmp_path / "dev.log", command=("dev", str(examples)))
    try:
        log = server.log.read_text()
        assert "deployed hello" in log
        assert "deployed order-flow" in log
        ran = stepstone("run", "hello", "--params", '{"name": "Ada"}', "--wait", "--db", db)
        assert "Hello, Ada!" in ran.stderr

        hello = examples / "hello.py"
        hello.write_text(hello.read_text().replace("Hello, {name}!", "Hi, {name}!"))
        wait_for(
            lambda: "deployed hello (Hello from examples) as version 2" in server.log.read_text(),
            what="the redeploy",
        )
        ran = stepstone("run", "hello", "--params", '{"name": "Bo"}', "--wait", "--db", db)
        assert "Hi, Bo!" in ran.stderr
    finally:
        assert server.stop() == 0
