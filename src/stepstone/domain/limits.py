"""Limits, in one place."""

from __future__ import annotations

MAX_JSON_BYTES = 1024 * 1024
"""Step outputs, params and event payloads: at most 1 MiB of JSON each."""
DEFAULT_MAX_STEPS = 10_000
MAX_INSTANCE_ID_LENGTH = 100
MAX_WORKFLOW_NAME_LENGTH = 64
MAX_TENANT_LENGTH = 128
DEFAULT_WAIT_TIMEOUT_MS = 24 * 3_600_000
"""``wait_for_event`` waits 24 hours unless told otherwise, as Cloudflare does."""
