"""Step configuration: retries with backoff and a per-attempt timeout, Cloudflare's defaults."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from stepstone.domain.durations import Duration, to_ms
from stepstone.domain.errors import ValidationError


class Backoff(StrEnum):
    CONSTANT = "constant"
    LINEAR = "linear"
    EXPONENTIAL = "exponential"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often a failed attempt is tried again, and how long to wait in between."""

    limit: int = 5
    delay_ms: int = 10_000
    backoff: Backoff = Backoff.EXPONENTIAL
    max_delay_ms: int | None = None
    """No wait is longer than this (a growing backoff stops growing here)."""

    def delay_before(self, retry: int) -> int:
        """Milliseconds to wait before retry number ``retry`` (1 = the first retry)."""
        if self.backoff is Backoff.CONSTANT:
            delay = self.delay_ms
        elif self.backoff is Backoff.LINEAR:
            delay = self.delay_ms * retry
        else:
            delay = self.delay_ms * 2 ** (retry - 1)
        ceiling = MAX_RETRY_DELAY_MS if self.max_delay_ms is None else self.max_delay_ms
        return min(delay, ceiling)


MAX_RETRY_DELAY_MS = 365 * 24 * 3_600_000
"""A backoff that doubles a hundred times would wait longer than time can be stored: a year is
the longest any wait between attempts lasts."""


@dataclass(frozen=True, slots=True)
class StepConfig:
    """A step's retry policy, per-attempt timeout and redaction."""

    retries: RetryPolicy = field(default_factory=RetryPolicy)
    timeout_ms: int = 600_000
    sensitive: bool = False

    @property
    def max_attempts(self) -> int:
        return self.retries.limit + 1

    def to_json(self) -> dict[str, Any]:
        """The shape Cloudflare shows in an instance's step list."""
        retries: dict[str, Any] = {
            "limit": self.retries.limit,
            "delay": self.retries.delay_ms,
            "backoff": self.retries.backoff.value,
        }
        if self.retries.max_delay_ms is not None:
            retries["max_delay"] = self.retries.max_delay_ms
        data: dict[str, Any] = {"retries": retries, "timeout": self.timeout_ms}
        if self.sensitive:
            data["sensitive"] = "output"
        return data


DEFAULT_CONFIG = StepConfig()


@functools.lru_cache(maxsize=256)
def shared_json(config: StepConfig) -> dict[str, Any]:
    """``config.to_json()``, made once per distinct config (steps repeat theirs on every
    call). The dict is shared: nothing may change it (step records only read it)."""
    return config.to_json()


def parse_step_config(
    retries: Mapping[str, Any] | None = None,
    timeout: Duration | None = None,
    sensitive: str | bool | None = None,
) -> StepConfig:
    """Build a ``StepConfig`` from Cloudflare-shaped options, explaining what is wrong."""
    if retries is None and timeout is None and sensitive is None:
        return DEFAULT_CONFIG
    policy = RetryPolicy()
    if retries is not None:
        if not isinstance(retries, Mapping):
            raise ValidationError(
                "retries must be a mapping like {'limit': 3, 'delay': '5 seconds'}"
            )
        unknown = set(retries) - {"limit", "delay", "backoff", "max_delay"}
        if unknown:
            raise ValidationError(f"unknown retries option(s): {', '.join(sorted(unknown))}")
        limit = retries.get("limit", policy.limit)
        if isinstance(limit, bool) or not isinstance(limit, int | float) or limit < 0:
            raise ValidationError("retries.limit must be a whole number of retries, 0 or more")
        backoff_name = retries.get("backoff", policy.backoff.value)
        try:
            backoff = Backoff(backoff_name)
        except ValueError:
            raise ValidationError(
                f"retries.backoff {backoff_name!r} is not one of constant, linear, exponential"
            ) from None
        max_delay = retries.get("max_delay")
        policy = RetryPolicy(
            limit=int(limit),
            delay_ms=to_ms(retries.get("delay", policy.delay_ms), what="retries.delay"),
            backoff=backoff,
            max_delay_ms=None if max_delay is None else to_ms(max_delay, what="retries.max_delay"),
        )
    if sensitive not in (None, False, True, "output"):
        raise ValidationError("sensitive must be 'output' (or None)")
    return StepConfig(
        retries=policy,
        timeout_ms=to_ms(timeout, what="timeout") if timeout is not None else 600_000,
        sensitive=bool(sensitive),
    )


def config_from_json(data: Mapping[str, Any] | None) -> StepConfig:
    """Inverse of ``StepConfig.to_json``."""
    if not data:
        return StepConfig()
    return parse_step_config(data.get("retries"), data.get("timeout"), data.get("sensitive"))
