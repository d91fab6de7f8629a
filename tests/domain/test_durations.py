"""Durations as Cloudflare writes them: milliseconds, or "<number> <unit>"."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stepstone.domain.durations import Duration, to_ms
from stepstone.domain.errors import ValidationError

SECOND = 1_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30 seconds", 30 * SECOND),
        ("1 second", SECOND),
        ("5s", 5 * SECOND),
        ("10 sec", 10 * SECOND),
        ("500 ms", 500),
        ("1 ms", 1),
        ("250 milliseconds", 250),
        ("5 minutes", 5 * MINUTE),
        ("2 mins", 2 * MINUTE),
        ("1 minute", MINUTE),
        ("3m", 3 * MINUTE),
        ("1 hour", HOUR),
        ("10 hrs", 10 * HOUR),
        ("1.5 hours", 90 * MINUTE),
        ("2 days", 2 * DAY),
        ("1 d", DAY),
        ("1 week", 7 * DAY),
        ("2 weeks", 14 * DAY),
        ("1 month", 30 * DAY),
        ("1 year", 365 * DAY),
        ("  7   Days  ", 7 * DAY),
        ("0 seconds", 0),
    ],
)
def test_strings(text: str, expected: int) -> None:
    assert to_ms(text) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(500, 500), (0, 0), (1.9, 1), (timedelta(minutes=2), 2 * MINUTE), (timedelta(0), 0)],
)
def test_numbers_are_milliseconds(value: Duration, expected: int) -> None:
    assert to_ms(value) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "soon",
        "5",
        "five seconds",
        "5 fortnights",
        "-5 seconds",
        "5 seconds ago",
        "1e3 ms",
        "5 sss",
        "ms",
    ],
)
def test_bad_strings_explain_what_to_write(text: str) -> None:
    with pytest.raises(ValidationError) as caught:
        to_ms(text, what="the sleep")
    message = caught.value.message
    assert message.startswith(f"the sleep {text!r} is not a duration")
    assert "'<number> <unit>'" in message
    assert "seconds, minutes, hours" in message


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (-1, "timeout must not be negative"),
        (timedelta(seconds=-1), "timeout must not be negative"),
        (float("nan"), "timeout must be a finite number of milliseconds"),
        (float("inf"), "timeout must be a finite number of milliseconds"),
        (True, "timeout must be a number of milliseconds or a string like '5 minutes'"),
        (None, "timeout must be a number of milliseconds or a string like '5 minutes'"),
        ([5], "timeout must be a number of milliseconds or a string like '5 minutes'"),
    ],
)
def test_bad_values(value: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        to_ms(value, what="timeout")  # type: ignore[arg-type]


@given(st.integers(min_value=0, max_value=10**12))
def test_whole_milliseconds_are_themselves(ms: int) -> None:
    assert to_ms(ms) == ms


@given(
    st.integers(min_value=0, max_value=10_000),
    st.sampled_from([("second", SECOND), ("minute", MINUTE), ("hour", HOUR), ("day", DAY)]),
)
def test_singular_and_plural_agree(n: int, unit: tuple[str, int]) -> None:
    name, factor = unit
    assert to_ms(f"{n} {name}") == to_ms(f"{n} {name}s") == n * factor
