"""Identifiers are checked whole: nothing may trail a valid-looking id."""

from __future__ import annotations

import pytest

from stepstone.domain.errors import ValidationError
from stepstone.domain.ids import check_instance_id, check_workflow_name, kebab_case


@pytest.mark.parametrize("bad", ["abc\n", "", "-lead", "has space", "x" * 101, "é"])
def test_bad_instance_ids_are_refused(bad: str) -> None:
    with pytest.raises(ValidationError):
        check_instance_id(bad)


@pytest.mark.parametrize("bad", ["flow\n", "", "a/b", "x" * 65])
def test_bad_workflow_names_are_refused(bad: str) -> None:
    with pytest.raises(ValidationError):
        check_workflow_name(bad)


def test_good_ids_pass_unchanged() -> None:
    assert check_instance_id("order_7-a") == "order_7-a"
    assert check_workflow_name("order-flow.v2") == "order-flow.v2"


@pytest.mark.parametrize(
    ("name", "kebab"), [("OrderFlow", "order-flow"), ("HTTPFetch", "http-fetch"), ("A", "a")]
)
def test_kebab_case(name: str, kebab: str) -> None:
    assert kebab_case(name) == kebab
