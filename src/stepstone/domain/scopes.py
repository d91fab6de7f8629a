"""API key scopes: what a key may do."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from stepstone.domain.errors import ValidationError


class Scope(StrEnum):
    READ = "workflows:read"
    WRITE = "workflows:write"
    EXECUTE = "workflows:execute"
    ADMIN = "admin"


def parse_scopes(values: Iterable[str]) -> tuple[Scope, ...]:
    scopes = []
    for value in values:
        try:
            scopes.append(Scope(value.strip()))
        except ValueError:
            known = ", ".join(s.value for s in Scope)
            raise ValidationError(f"unknown scope {value!r}: use {known}") from None
    if not scopes:
        raise ValidationError("a key needs at least one scope")
    return tuple(dict.fromkeys(scopes))


def allows(granted: Iterable[str], needed: Scope) -> bool:
    """``admin`` allows everything; otherwise the scope itself is needed."""
    granted = set(granted)
    return Scope.ADMIN.value in granted or needed.value in granted
