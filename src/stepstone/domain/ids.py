"""Identifiers: caller-given instance ids are checked the way Cloudflare checks them."""

from __future__ import annotations

import re
import uuid

from stepstone.domain.errors import ValidationError
from stepstone.domain.limits import (
    MAX_INSTANCE_ID_LENGTH,
    MAX_TENANT_LENGTH,
    MAX_WORKFLOW_NAME_LENGTH,
)

_INSTANCE_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")
_WORKFLOW_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_TENANT = re.compile(r"[A-Za-z0-9_.-]+")


def new_id() -> str:
    return str(uuid.uuid4())


def check_instance_id(value: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValidationError("instance id must be a non-empty string")
    if len(value) > MAX_INSTANCE_ID_LENGTH:
        raise ValidationError(f"instance id is longer than {MAX_INSTANCE_ID_LENGTH} characters")
    if not _INSTANCE_ID.fullmatch(value):
        raise ValidationError(
            f"instance id {value!r} may contain only letters, digits, '-' and '_', "
            "and must not start with '-'"
        )
    return value


def check_workflow_name(value: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValidationError("workflow name must be a non-empty string")
    if len(value) > MAX_WORKFLOW_NAME_LENGTH:
        raise ValidationError(f"workflow name is longer than {MAX_WORKFLOW_NAME_LENGTH} characters")
    if not _WORKFLOW_NAME.fullmatch(value):
        raise ValidationError(
            f"workflow name {value!r} may contain only letters, digits, '.', '-' and '_'"
        )
    return value


def check_tenant(value: str) -> str:
    """A tenant (account, project, organization) name, as keys and every row carry it."""
    if not isinstance(value, str) or not value:
        raise ValidationError("tenant must be a non-empty string")
    if len(value) > MAX_TENANT_LENGTH:
        raise ValidationError(f"tenant is longer than {MAX_TENANT_LENGTH} characters")
    # fullmatch: '$' would let a trailing newline through.
    if not _TENANT.fullmatch(value):
        raise ValidationError(
            f"tenant {value!r} may contain only letters, digits, '.', '-' and '_'"
        )
    return value


def kebab_case(class_name: str) -> str:
    """``OrderFlow`` -> ``order-flow``; ``HTTPFetch`` -> ``http-fetch``."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "-", class_name)
    return spaced.replace("_", "-").lower()
