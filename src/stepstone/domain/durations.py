"""Durations as Cloudflare writes them: milliseconds, or "30 seconds", "5 minutes", "1 week"."""

from __future__ import annotations

import math
import re
from datetime import timedelta

from stepstone.domain.errors import ValidationError

_UNIT_MS = {
    "millisecond": 1,
    "ms": 1,
    "second": 1_000,
    "sec": 1_000,
    "s": 1_000,
    "minute": 60_000,
    "min": 60_000,
    "m": 60_000,
    "hour": 3_600_000,
    "hr": 3_600_000,
    "h": 3_600_000,
    "day": 86_400_000,
    "d": 86_400_000,
    "week": 604_800_000,
    "w": 604_800_000,
    "month": 2_592_000_000,
    "year": 31_536_000_000,
    "y": 31_536_000_000,
}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]+)\s*$")

Duration = int | float | str | timedelta


def to_ms(value: Duration, *, what: str = "duration") -> int:
    """Return ``value`` in whole milliseconds.

    Numbers are milliseconds; strings are ``"<number> <unit>"`` with units from milliseconds to
    years, singular or plural ("1 hour", "2 days", "500 ms").
    """
    if isinstance(value, bool):
        raise ValidationError(
            f"{what} must be a number of milliseconds or a string like '5 minutes'"
        )
    if isinstance(value, timedelta):
        ms = value.total_seconds() * 1000
    elif isinstance(value, int | float):
        ms = float(value)
    elif isinstance(value, str):
        match = _PATTERN.match(value)
        unit = match.group(2).lower() if match else ""
        if unit not in _UNIT_MS and unit.endswith("s"):
            unit = unit[:-1]  # plurals: "seconds", "hours", "mins"
        if not match or unit not in _UNIT_MS:
            raise ValidationError(
                f"{what} {value!r} is not a duration: write milliseconds or '<number> <unit>' "
                "with a unit of ms, seconds, minutes, hours, days, weeks, months or years"
            )
        ms = float(match.group(1)) * _UNIT_MS[unit]
    else:
        raise ValidationError(
            f"{what} must be a number of milliseconds or a string like '5 minutes'"
        )
    if not math.isfinite(ms):
        raise ValidationError(f"{what} must be a finite number of milliseconds")
    if ms < 0:
        raise ValidationError(f"{what} must not be negative")
    return int(ms)
