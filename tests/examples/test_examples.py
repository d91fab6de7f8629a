"""Every example in ``examples/`` runs to completion."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from stepstone.testing import run_workflow

EXAMPLES = Path(__file__).parents[2] / "examples"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"examples_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_every_example_is_covered() -> None:
    assert {p.stem for p in EXAMPLES.glob("*.py")} == {"hello", "order_flow"}


async def test_hello() -> None:
    result = await run_workflow(_load("hello").Hello, params={"name": "Ada"})
    assert result.status == "complete"
    assert result.output == "Hello, Ada!"


async def test_order_flow_ships_after_packing() -> None:
    result = await run_workflow(
        _load("order_flow").OrderFlow,
        params={"order_id": "A-1", "amount": 42},
        events=[("packed", {"by": "sam"})],
    )
    assert result.status == "complete"
    assert result.output["shipment"] == {"tracking": "TRK-ch_A-1", "packed_by": {"by": "sam"}}


async def test_order_flow_refunds_when_never_packed(capsys: pytest.CaptureFixture[str]) -> None:
    result = await run_workflow(
        _load("order_flow").OrderFlow, params={"order_id": "B-2", "amount": 5}
    )
    assert result.status == "errored"
    assert result.step("rollback:charge").state == "complete"
    assert "refunding ch_B-2" in capsys.readouterr().out
