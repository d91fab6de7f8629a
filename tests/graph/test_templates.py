"""Payload templates: JSON types kept, nested values rendered, the sandbox holding."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stepstone.domain.errors import ValidationError, WorkflowDefinitionError
from stepstone.graph import TemplateRenderError, render_text, render_value
from stepstone.graph.templates import check_template, template_context

PAYLOAD = {
    "amount": 12.5,
    "count": 3,
    "user": {"name": "Ada", "tags": ["a", "b"]},
    "flag": False,
    "nothing": None,
    "items": ["x"],
    "_id": "m1",
}
OUTPUTS = {"charge": {"receipt": "r-9", "lines": [1, 2]}, "load-order": {"id": 7}, "skipped": None}
CONTEXT = template_context(PAYLOAD, OUTPUTS)


def render(value: Any) -> Any:
    return render_value(value, CONTEXT, step_ref="step", field="payload")


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ payload.count }}", 3),
        ("{{payload.amount}}", 12.5),
        ("{{ payload.flag }}", False),
        ("{{ payload.nothing }}", None),
        ("{{ payload.user }}", {"name": "Ada", "tags": ["a", "b"]}),
        ("{{ payload.user.tags }}", ["a", "b"]),
        ("{{ parent_outputs.charge.receipt }}", "r-9"),
        ("{{ parent_outputs.charge.lines }}", [1, 2]),
        ("{{ parent_outputs['load-order'].id }}", 7),
        ("{{ parent_outputs.skipped }}", None),
        ("{{ payload.count + 1 }}", 4),
        ("{{ payload.count * 2 }}", 6),
        ("{{ payload.user.tags | length }}", 2),
        ("{{ payload.user.name | upper }}", "ADA"),
        ("{{ [payload.count, payload.user.name] }}", [3, "Ada"]),
        ("{{ {'n': payload.count} }}", {"n": 3}),
        ("{{- payload.count -}}", 3),
        ("{{ '}}' }}", "}}"),
        # a key named like a dict method is the key (JSON data first)
        ("{{ payload.items }}", ["x"]),
        ("{{ payload._id }}", "m1"),
        # Strait's own spelling: a top-level key of the trigger payload
        ("{{ count }}", 3),
        ("{{ user.name }}", "Ada"),
    ],
)
def test_a_sole_expression_keeps_its_json_type(template: str, expected: Any) -> None:
    result = render(template)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("order {{ payload.count }}", "order 3"),
        ("{{ payload.count }} items", "3 items"),
        (" {{ payload.count }}", " 3"),
        ("{{ payload.count }}{{ payload.count }}", "33"),
        ("{{ payload.count }} and {{ payload.amount }}", "3 and 12.5"),
        ("u={{ payload.user }}", 'u={"name":"Ada","tags":["a","b"]}'),
        ("f={{ payload.flag }}", "f=false"),
        ("n=[{{ payload.nothing }}]", "n=[]"),
        ("{% for t in payload.user.tags %}{{ t }};{% endfor %}", "a;b;"),
        ("{# a comment #}plain", "plain"),
        ("{{ '%5d' % payload.count }}|{{ '{:>4}'.format(payload.count) }}", "    3|   3"),
        ("{{ payload.user.name | center(5) }}", " Ada "),
        ("100% {{ 'x%sy' % payload.count }}", "100% x3y"),
        ("no templates here", "no templates here"),
        ("{ not: a template }", "{ not: a template }"),
    ],
)
def test_other_strings_render_as_text(template: str, expected: str) -> None:
    assert render(template) == expected


def test_templates_anywhere_in_a_value_are_rendered() -> None:
    value = {
        "n": "{{ payload.count }}",
        "deep": [{"who": "{{ payload.user.name }}", "keep": 1}, ["{{ payload.flag }}", None]],
        "{{ payload.count }}": "keys are not rendered",
        "literal": True,
    }
    assert render(value) == {
        "n": 3,
        "deep": [{"who": "Ada", "keep": 1}, [False, None]],
        "{{ payload.count }}": "keys are not rendered",
        "literal": True,
    }
    assert value["n"] == "{{ payload.count }}"  # the definition's value is not changed


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ("{{ payload.missing }}", "has no attribute 'missing'"),
        ("{{ missing }}", "'missing' is undefined"),
        ("x {{ payload.user.missing.deeper }}", "has no attribute 'missing'"),
        ("{{ [payload.missing] }}", "has no attribute 'missing'"),
        ("{{ parent_outputs.other.x }}", "has no attribute 'other'"),
        ("{{ payload.count / 0 }}", "division by zero"),
        ("{{ payload.user.name + 1 }}", "can only concatenate str"),
        ("{{ payload.count ", "unexpected end of template"),
        ("{% if %}", "Expected an expression"),
        ("{{ payload | no_such_filter }}", "No filter named 'no_such_filter'"),
        ("{{ lipsum }}", "is a function, which is not a JSON value"),
        ("{{ range(3) }}", "is a range, which is not a JSON value"),
        ("{{ {1: 2} }}", "keys must be strings"),
        ("{{ 1e308 * 10 }}", "is not a JSON number"),
    ],
)
def test_errors_name_the_step_the_field_and_the_template(template: str, reason: str) -> None:
    with pytest.raises(TemplateRenderError) as caught:
        render_value({"a": [template]}, CONTEXT, step_ref="charge", field="payload")
    assert isinstance(caught.value, ValidationError)
    message = caught.value.message
    assert message.startswith(f"step 'charge': payload.a[0]: template {template!r}: ")
    assert reason in message


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__ }}",
        "{{ payload.__class__.__mro__ }}",
        "x{{ ''.__class__.__base__.__subclasses__() }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ lipsum.__globals__['os'] }}",
        "{{ payload['__class__'] }}",
        "{% for c in ().__class__.__bases__ %}{{ c }}{% endfor %}",
        "{{ '{0.__class__}'.format(payload) }}",
        "{{ payload.user.tags.append(1) }}",
        "{{ payload.user.update({'x': 1}) }}",
        "{{ 'x' * 1000000 }}",
        "{{ [0] * 200000 }}",
        "{{ 2 ** 100000 }}",
        "{{ range(10000000) | list }}",
        "{{ '{:>999999999}'.format(1) }}",
        "{{ '{:>{}}'.format(1, payload.count * 10 ** 9) }}",
        "{{ '%999999999d' % 1 }}",
        "{{ '%*d' % (1000000000, 1) }}",
        "{{ '%.99999f'|format(1) }}",
        "{{ 'a'|center(1000000000) }}",
        "{{ 'a'|indent(1000000000) }}",
    ],
)
def test_the_sandbox_holds(template: str) -> None:
    with pytest.raises(TemplateRenderError, match="step 's': payload: template"):
        render_value(template, CONTEXT, step_ref="s", field="payload")
    assert PAYLOAD["user"] == {"name": "Ada", "tags": ["a", "b"]}


@pytest.mark.parametrize(
    "template", ["{{ ''.__class__ }}", "{{ payload['__globals__'] }}", "{{ x.__dict__ }}"]
)
def test_dunder_names_are_refused_before_anything_runs(template: str) -> None:
    with pytest.raises(WorkflowDefinitionError, match="is not readable here"):
        check_template(template, step_ref="s", field="payload")


def test_check_template_finds_the_parents_it_reads() -> None:
    text = "{{ parent_outputs.a.x }} {{ parent_outputs['b-c'].y }} {{ payload.z }} {{ a.b }}"
    assert check_template(text, step_ref="s", field="payload") == ("a", "b-c")
    assert check_template("plain", step_ref="s", field="payload") == ()
    with pytest.raises(WorkflowDefinitionError, match=r"^step 's': payload: template"):
        check_template("{{ oops", step_ref="s", field="payload")


def test_render_text_always_gives_a_string() -> None:
    key = render_text("order-{{ payload.count }}", CONTEXT, step_ref="s", field="event_key")
    assert key == "order-3"
    assert render_text("{{ payload.count }}", CONTEXT, step_ref="s", field="event_key") == "3"
    assert render_text("plain", {}, step_ref="s", field="event_key") == "plain"


def test_context_names_win_over_payload_keys() -> None:
    context = template_context({"payload": "shadowed", "parent_outputs": 1, "k": 2}, {"p": 3})
    assert context["payload"] == {"payload": "shadowed", "parent_outputs": 1, "k": 2}
    assert context["parent_outputs"] == {"p": 3}
    assert context["k"] == 2
    assert template_context([1, 2], {})["payload"] == [1, 2]


finite = st.floats(allow_nan=False, allow_infinity=False)
json_scalars = st.none() | st.booleans() | st.integers() | finite | st.text()
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=10,
)


@given(json_values)
def test_a_sole_expression_returns_the_value_itself(value: Any) -> None:
    context = template_context({"v": value}, {})
    assert render_value("{{ payload.v }}", context, step_ref="s", field="payload") == value


@given(json_values.filter(lambda v: "{" not in repr(v)))
def test_values_without_templates_come_back_unchanged(value: Any) -> None:
    assert render_value(value, {}, step_ref="s", field="payload") == value
