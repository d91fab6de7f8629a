"""Step payload templates: Jinja2 expressions in a sandbox that cannot reach Python's insides.

A template reads ``payload`` (the trigger payload) and ``parent_outputs`` (the step's parents'
outputs by ref): ``{{ payload.order.id }}``, ``{{ parent_outputs.charge.receipt }}``, or, for a
ref that is not an identifier, ``{{ parent_outputs['load-order'].id }}``. Strait's own spelling,
``{{ order.id }}`` for a top-level key of the trigger payload, works too.

A string that is exactly one ``{{ ... }}`` keeps the JSON type of its value (a number stays a
number, an object stays an object); any other string renders as text, with objects, lists and
booleans written as JSON and null as nothing. Templates in nested objects and lists are
rendered; keys are not.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError, Undefined, nodes
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from stepstone.domain.errors import ValidationError, WorkflowDefinitionError

MAX_REPEAT = 100_000
"""``'x' * n`` and ``[..] * n`` may build at most this many items; ``**`` is bounded too."""


class TemplateRenderError(ValidationError):
    """A step's template cannot be rendered."""


# Widths and repeats are how a template would exhaust memory or CPU from inside the sandbox.
_PRINTF_WIDE = re.compile(r"%[-+ #0]*(\*|\d{5,}|\d*\.(\*|\d{5,}))")
_FORMAT_WIDE = re.compile(r"\{[^{}]*:[^{}]*(\{|\d{5,})")
MAX_WIDTH = 9_999


class _Sandbox(ImmutableSandboxedEnvironment):
    # The sandbox keeps templates away from attributes like __class__; these hooks bound the
    # sizes a template can ask for.
    intercepted_binops = frozenset({"*", "**", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.filters["center"] = _bounded(self.filters["center"], "width")
        self.filters["indent"] = _bounded(self.filters["indent"], "width")
        self.filters["format"] = _printf_checked(self.filters["format"])

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        owner = getattr(value, "__self__", None)
        if isinstance(owner, str) and _FORMAT_WIDE.search(owner):
            raise SecurityError("format widths are limited to four digits")
        return super().wrap_str_format(value)

    def getattr(self, obj: Any, attribute: str) -> Any:
        # JSON data first: payload.items is the key "items", not the dict method.
        if isinstance(obj, Mapping) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and _is_int(right) and (abs(right) > 64 or _too_big(left)):
            raise SecurityError("exponent too large")
        if operator == "%" and isinstance(left, str) and _PRINTF_WIDE.search(left):
            raise SecurityError("format widths are limited to four digits")
        if operator == "*":
            for seq, count in ((left, right), (right, left)):
                sized = isinstance(seq, str | list | tuple) and _is_int(count)
                if sized and len(seq) * count > MAX_REPEAT:
                    raise SecurityError(f"repeating makes more than {MAX_REPEAT:,} items")
        return super().call_binop(context, operator, left, right)


def _bounded(function: Callable[..., Any], name: str) -> Callable[..., Any]:
    def bounded(value: Any, *args: Any, **kwargs: Any) -> Any:
        width = args[0] if args else kwargs.get(name, 0)
        if (_is_int(width) and abs(width) > MAX_WIDTH) or (
            isinstance(width, str) and len(width) > MAX_WIDTH
        ):
            raise SecurityError(f"{name} is limited to {MAX_WIDTH:,}")
        return function(value, *args, **kwargs)

    return bounded


def _printf_checked(function: Callable[..., Any]) -> Callable[..., Any]:
    def checked(value: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(value, str) and _PRINTF_WIDE.search(value):
            raise SecurityError("format widths are limited to four digits")
        return function(value, *args, **kwargs)

    return checked


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _too_big(value: Any) -> bool:
    return _is_int(value) and abs(value) > 10**18


def _text(value: Any) -> Any:
    """How a value reads inside a longer string: JSON for structures, nothing for null."""
    if isinstance(value, Undefined):
        return value  # Jinja raises the undefined error when it writes this out
    if value is None:
        return ""
    if isinstance(value, bool | dict | list | tuple):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    return value


_ENV = _Sandbox(undefined=StrictUndefined, autoescape=False, finalize=_text)
_MARKS = ("{{", "{%", "{#")


def _is_template(text: str) -> bool:
    return any(mark in text for mark in _MARKS)


@functools.lru_cache(maxsize=1024)
def _compiled(text: str) -> Template:
    return _ENV.from_string(text)


def check_template(text: str, *, step_ref: str, field: str) -> tuple[str, ...]:
    """Parse ``text`` without rendering it; return the refs it reads from ``parent_outputs``.

    Raises:
        WorkflowDefinitionError: a syntax error, an unknown filter or a name the sandbox
            forbids, with the step, the field and the template.
    """
    if not _is_template(text):
        return ()
    try:
        tree = _ENV.parse(text)
        _compiled(text)  # compiling also finds unknown filters and tests
    except TemplateError as exc:
        raise _refusal(step_ref, field, text, exc) from None
    refs: list[str] = []
    for node in tree.find_all(nodes.Getattr):
        _check_name(node.attr, step_ref, field, text)
        if _is_parent_outputs(node.node):
            refs.append(node.attr)
    for item in tree.find_all(nodes.Getitem):
        key = item.arg
        if isinstance(key, nodes.Const) and isinstance(key.value, str):
            _check_name(key.value, step_ref, field, text)
            if _is_parent_outputs(item.node):
                refs.append(key.value)
    return tuple(dict.fromkeys(refs))


def _check_name(name: str, step_ref: str, field: str, text: str) -> None:
    # What the sandbox would refuse when rendering, refused when the definition is created.
    if name.startswith("__"):
        raise _refusal(step_ref, field, text, SecurityError(f"{name!r} is not readable here"))


def _is_parent_outputs(node: nodes.Node) -> bool:
    return isinstance(node, nodes.Name) and node.name == "parent_outputs"


def render_value(value: Any, context: Mapping[str, Any], *, step_ref: str, field: str) -> Any:
    """Render every template string in a JSON value (the value itself is not changed).

    Args:
        value: a JSON value; strings anywhere in it may hold templates.
        context: ``{"payload": ..., "parent_outputs": {...}}``, see :func:`template_context`.
        step_ref: the step, named in errors.
        field: the field, named in errors (``payload``).

    Raises:
        TemplateRenderError: an undefined name or key, a syntax error, a sandbox violation or
            any other failure, with the step, where in the value and the template.
    """
    if isinstance(value, str):
        return _render_string(value, context, step_ref, field)
    if isinstance(value, Mapping):
        return {
            key: render_value(item, context, step_ref=step_ref, field=f"{field}.{key}")
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [
            render_value(item, context, step_ref=step_ref, field=f"{field}[{i}]")
            for i, item in enumerate(value)
        ]
    return value


def render_text(text: str, context: Mapping[str, Any], *, step_ref: str, field: str) -> str:
    """Render a template that must come out as a string (an ``event_key``, say)."""
    if not _is_template(text):
        return text
    try:
        return _compiled(text).render(context)
    except Exception as exc:  # any failure inside a template is the template's fault
        raise _error(step_ref, field, text, exc) from None


def template_context(payload: Any, parent_outputs: Mapping[str, Any]) -> dict[str, Any]:
    """The names a template sees: ``payload``, ``parent_outputs`` and, as Strait's templates
    read them, the trigger payload's top-level keys (``payload`` and ``parent_outputs`` win)."""
    context: dict[str, Any] = dict(payload) if isinstance(payload, Mapping) else {}
    context["payload"] = payload
    context["parent_outputs"] = dict(parent_outputs)
    return context


def _render_string(text: str, context: Mapping[str, Any], step_ref: str, field: str) -> Any:
    if not _is_template(text):
        return text
    try:
        expression = _sole_expression(text)
        if expression is None:
            return render_text(text, context, step_ref=step_ref, field=field)
        return _to_json(expression(**context))
    except TemplateRenderError:
        raise
    except Exception as exc:
        raise _error(step_ref, field, text, exc) from None


@functools.lru_cache(maxsize=1024)
def _sole_expression(text: str) -> Callable[..., Any] | None:
    """If ``text`` is exactly one ``{{ expression }}``, that expression compiled; else None."""
    if not (text.startswith("{{") and text.endswith("}}")):
        return None
    try:
        body = _ENV.parse(text).body
    except TemplateError:
        return None  # rendering reports the syntax error with the whole text
    if len(body) != 1 or not isinstance(body[0], nodes.Output) or len(body[0].nodes) != 1:
        return None
    if isinstance(body[0].nodes[0], nodes.TemplateData):
        return None
    inner = text[2:-2].removeprefix("-").removesuffix("-")
    return _ENV.compile_expression(inner, undefined_to_none=False)


def _to_json(value: Any) -> Any:
    """A template's value as JSON: a Python value that is not JSON is an error, not a string."""
    if isinstance(value, Undefined):
        str(value)  # raises the undefined (or sandbox) error it stands for
    if value is None or isinstance(value, str | bool | int):
        return str(value) if isinstance(value, str) else value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"the value {value} is not a JSON number")
        return value
    if isinstance(value, Mapping):
        if not all(isinstance(key, str) for key in value):
            raise ValueError("an object's keys must be strings")
        return {key: _to_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_to_json(item) for item in value]
    raise ValueError(f"the value is a {type(value).__name__}, which is not a JSON value")


def _error(step_ref: str, field: str, text: str, exc: BaseException) -> TemplateRenderError:
    return TemplateRenderError(_message(step_ref, field, text, exc))


def _refusal(step_ref: str, field: str, text: str, exc: BaseException) -> WorkflowDefinitionError:
    return WorkflowDefinitionError(_message(step_ref, field, text, exc))


def _message(step_ref: str, field: str, text: str, exc: BaseException) -> str:
    shown = text if len(text) <= 200 else text[:200] + "…"
    reason = str(exc) or type(exc).__name__
    if isinstance(exc, TemplateError) and getattr(exc, "lineno", None) and "\n" in text:
        reason = f"{reason} (line {getattr(exc, 'lineno', '?')})"
    return f"step {step_ref!r}: {field}: template {shown!r}: {reason}"
