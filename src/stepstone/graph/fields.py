"""Reading one step's JSON fields, with messages that name the step, the field and the fix.

Strait's server is written in Go, whose zero values stand for "not set": an empty string, and a
0 in a timeout or a limit, are read as absent, so a step echoed back by a client round-trips.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Collection, Mapping
from enum import StrEnum
from typing import Any, TypeVar

from stepstone.domain.errors import WorkflowDefinitionError
from stepstone.graph.vocabulary import MAX_SECONDS

E = TypeVar("E", bound=StrEnum)

MAX_TEXT = 2_048


class StepFields:
    """One raw step object; each method reads one field and refuses a bad value clearly."""

    def __init__(self, raw: Mapping[str, Any], label: str) -> None:
        self.raw = raw
        self.label = label

    def fail(self, problem: str) -> WorkflowDefinitionError:
        return WorkflowDefinitionError(f"{self.label}: {problem}")

    def refuse_unknown(
        self, known: Collection[str], ignored: Collection[str], hints: Mapping[str, str]
    ) -> None:
        for key in self.raw:
            if key in known or key in ignored:
                continue
            close = difflib.get_close_matches(str(key), list(known), n=1)
            better = hints.get(str(key)) or (repr(close[0]) if close else None)
            hint = f" (did you mean {better}?)" if better else ""
            raise self.fail(f"unknown field {key!r}{hint}")

    def either(self, name: str, alias: str) -> Any:
        """The value under ``name`` or its ``alias`` (the SDK's spelling); both must agree."""
        value, other = self.raw.get(name), self.raw.get(alias)
        if value is not None and other is not None and value != other:
            raise self.fail(f"{name} {value!r} and {alias} {other!r} disagree; give one of them")
        return value if value is not None else other

    def text(self, name: str, value: Any = None, *, required: str | None = None) -> str | None:
        """A string field; ``""`` is absent. ``required`` is the reason it must be there."""
        value = self.raw.get(name) if value is None else value
        if value is None or value == "":
            if required:
                raise self.fail(f"{name} is required {required}")
            return None
        if not isinstance(value, str):
            raise self.fail(f"{name} must be a string, not {_kind(value)}")
        if len(value) > MAX_TEXT:
            raise self.fail(f"{name} is longer than {MAX_TEXT:,} characters")
        if "\x00" in value:
            raise self.fail(f"{name} must not contain a NUL character")
        return value

    def need_text(self, name: str, why: str) -> str:
        value = self.text(name, required=why)
        if value is None:  # text() has refused already; this informs the type checker
            raise self.fail(f"{name} is required {why}")
        return value

    def whole(
        self,
        name: str,
        *,
        low: int,
        high: int,
        zero_is_unset: bool = True,
        required: str | None = None,
    ) -> int | None:
        """A whole number in ``low..high``; 0 is absent unless ``zero_is_unset`` is false."""
        value = self.raw.get(name)
        if value is None or (zero_is_unset and value == 0 and not isinstance(value, bool)):
            if required:
                raise self.fail(f"{name} is required {required}")
            return None
        number = _integer(value)
        if number is None or not low <= number <= high:
            raise self.fail(
                f"{name} must be a whole number from {low:,} to {high:,}, not {value!r}"
            )
        return number

    def secs(self, name: str, *, low: int = 1, zero_is_unset: bool = True) -> int | None:
        """A number of seconds, at most a year."""
        return self.whole(name, low=low, high=MAX_SECONDS, zero_is_unset=zero_is_unset)

    def choice(self, name: str, kind: type[E], default: E, value: Any = None) -> E:
        value = self.raw.get(name) if value is None else value
        if value is None or value == "":
            return default
        try:
            return kind(value)
        except ValueError:
            words = ", ".join(member.value for member in kind)
            raise self.fail(f"unknown {name} {value!r}; use one of {words}") from None

    def optional_choice(self, name: str, kind: type[E]) -> E | None:
        if self.raw.get(name) in (None, ""):
            return None
        return self.choice(name, kind, next(iter(kind)))

    def strings(self, name: str, value: Any = None) -> tuple[str, ...]:
        value = self.raw.get(name) if value is None else value
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise self.fail(f"{name} must be a list of strings, not {_kind(value)}")
        for item in value:
            if not self.text(name, item):
                raise self.fail(f"{name} must not hold an empty string")
        return tuple(value)


def _integer(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return None


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    for kind, name in names.items():
        if isinstance(value, kind):
            return name
    if isinstance(value, int | float):
        return "a number"
    return "null" if value is None else type(value).__name__
