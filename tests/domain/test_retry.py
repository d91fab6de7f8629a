"""Retry policies and step configs: backoff arithmetic, Cloudflare's defaults, clear refusals."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stepstone.domain.errors import ValidationError
from stepstone.domain.retry import (
    MAX_RETRY_DELAY_MS,
    Backoff,
    RetryPolicy,
    StepConfig,
    config_from_json,
    parse_step_config,
)


@pytest.mark.parametrize(
    ("backoff", "delays"),
    [
        (Backoff.CONSTANT, [500, 500, 500, 500]),
        (Backoff.LINEAR, [500, 1_000, 1_500, 2_000]),
        (Backoff.EXPONENTIAL, [500, 1_000, 2_000, 4_000]),
    ],
)
def test_delay_before_each_retry(backoff: Backoff, delays: list[int]) -> None:
    policy = RetryPolicy(limit=4, delay_ms=500, backoff=backoff)
    assert [policy.delay_before(retry) for retry in range(1, 5)] == delays


@given(
    st.integers(min_value=0, max_value=86_400_000),
    st.sampled_from(list(Backoff)),
    st.integers(min_value=1, max_value=30),
)
def test_delays_never_shrink_and_start_at_the_delay(
    delay_ms: int, backoff: Backoff, retry: int
) -> None:
    policy = RetryPolicy(delay_ms=delay_ms, backoff=backoff)
    assert policy.delay_before(1) == delay_ms
    assert policy.delay_before(retry + 1) >= policy.delay_before(retry)


def test_a_growing_backoff_stops_at_its_ceiling() -> None:
    capped = RetryPolicy(limit=100, delay_ms=1_000, max_delay_ms=5_000)
    assert [capped.delay_before(r) for r in range(1, 6)] == [1_000, 2_000, 4_000, 5_000, 5_000]
    # Without one, a hundred doublings still wait at most a year (a storable time).
    uncapped = RetryPolicy(limit=100, delay_ms=1_000)
    assert uncapped.delay_before(100) == MAX_RETRY_DELAY_MS


def test_defaults_are_cloudflares() -> None:
    config = parse_step_config()
    assert config == StepConfig()
    assert config.retries == RetryPolicy(limit=5, delay_ms=10_000, backoff=Backoff.EXPONENTIAL)
    assert config.timeout_ms == 600_000
    assert config.max_attempts == 6
    assert config.to_json() == {
        "retries": {"limit": 5, "delay": 10_000, "backoff": "exponential"},
        "timeout": 600_000,
    }


def test_parse_reads_durations_and_partial_retries() -> None:
    config = parse_step_config({"delay": "2 seconds"}, timeout="1 minute", sensitive="output")
    assert config.retries == RetryPolicy(limit=5, delay_ms=2_000, backoff=Backoff.EXPONENTIAL)
    assert config.timeout_ms == 60_000
    assert config.sensitive is True
    assert config.to_json()["sensitive"] == "output"


def test_zero_retries_means_one_attempt() -> None:
    assert parse_step_config({"limit": 0}).max_attempts == 1


@pytest.mark.parametrize(
    "config",
    [
        StepConfig(),
        parse_step_config({"limit": 0, "delay": 1, "backoff": "constant"}, timeout=50),
        parse_step_config({"limit": 9, "backoff": "linear"}, sensitive="output"),
        parse_step_config({"limit": 20, "delay": "1 second", "max_delay": "1 minute"}),
    ],
)
def test_json_round_trip(config: StepConfig) -> None:
    assert config_from_json(config.to_json()) == config


def test_no_json_is_the_default() -> None:
    assert config_from_json(None) == StepConfig()
    assert config_from_json({}) == StepConfig()


@pytest.mark.parametrize(
    ("retries", "timeout", "sensitive", "message"),
    [
        ("3 times", None, None, "retries must be a mapping like"),
        ({"limit": 3, "delays": 5}, None, None, r"unknown retries option\(s\): delays"),
        ({"limit": -1}, None, None, "retries.limit must be a whole number of retries, 0 or more"),
        ({"limit": True}, None, None, "retries.limit must be a whole number"),
        ({"limit": "3"}, None, None, "retries.limit must be a whole number"),
        (
            {"backoff": "fibonacci"},
            None,
            None,
            "retries.backoff 'fibonacci' is not one of constant, linear, exponential",
        ),
        ({"delay": "soon"}, None, None, "retries.delay 'soon' is not a duration"),
        (None, "forever", None, "timeout 'forever' is not a duration"),
        (None, -5, None, "timeout must not be negative"),
        (None, None, "everything", "sensitive must be 'output'"),
    ],
)
def test_bad_configs_say_what_to_change(
    retries: Any, timeout: Any, sensitive: Any, message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        parse_step_config(retries, timeout, sensitive)
