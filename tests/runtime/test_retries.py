"""Retries: every attempt is recorded, delays follow the backoff, timeouts and give-ups."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest

from stepstone import (
    NonRetryableError,
    StepFailedError,
    WorkflowEntrypoint,
    WorkflowEvent,
    WorkflowStep,
)
from stepstone.domain.records import StepState
from stepstone.domain.status import InstanceStatus
from stepstone.engine import Engine
from stepstone.runtime.clock import FakeClock
from stepstone.worker.worker import Worker
from tests.runtime.support import CALLS, instance_of, output_of, step_named


def flaky(name: str, failures: int) -> str:
    """Fail ``failures`` times, then succeed."""
    CALLS[name] += 1
    if CALLS[name] <= failures:
        raise ConnectionError(f"attempt {CALLS[name]} of {name} failed")
    return f"{name} ok"


class Backoffs(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        p = event.payload
        return await step.do(
            "flaky",
            flaky,
            p["key"],
            p["failures"],
            retries={"limit": p["limit"], "delay": p["delay"], "backoff": p["backoff"]},
        )


class GivesUp(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        return await step.do(
            "hopeless", flaky, "hopeless", 100, retries={"limit": 2, "delay": "1 second"}
        )


def refuse() -> None:
    CALLS["refuse"] += 1
    raise NonRetryableError("card declined", name="CardDeclined")


class NonRetryable(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        await step.do("charge", refuse, retries={"limit": 5, "delay": 10})


async def hang_first_time() -> str:
    CALLS["hang"] += 1
    if CALLS["hang"] == 1:
        await asyncio.Event().wait()  # never set: only the attempt's timeout ends this
    return "second attempt"


class TimesOut(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        return await step.do(
            "slow",
            hang_first_time,
            timeout=50,
            retries={"limit": 1, "delay": "3 seconds", "backoff": "constant"},
        )


class Caught(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        try:
            await step.do("risky", flaky, "risky", 100, retries={"limit": 1, "delay": 5})
        except StepFailedError as exc:
            return {"fallback": True, "why": exc.error_name}
        return {"fallback": False}


class Uncaught(WorkflowEntrypoint):
    async def run(self, event: WorkflowEvent, step: WorkflowStep) -> Any:
        await step.do("ok", lambda: 1)
        await step.do("bad", self.explode, retries={"limit": 0})
        CALLS["after"] += 1

    @staticmethod
    def explode() -> None:
        raise ValueError("bad input: 42")


@pytest.mark.parametrize(
    ("backoff", "expected_gaps"),
    [
        ("constant", [1_000, 1_000, 1_000]),
        ("linear", [1_000, 2_000, 3_000]),
        ("exponential", [1_000, 2_000, 4_000]),
    ],
)
async def test_attempt_starts_follow_the_backoff(
    engine: Engine, worker: Worker, clock: FakeClock, backoff: str, expected_gaps: list[int]
) -> None:
    await engine.deploy_class(Backoffs)
    params = {"key": backoff, "failures": 3, "limit": 3, "delay": "1 second", "backoff": backoff}
    instance = await engine.create_instance("backoffs", params=params)

    await worker.run_until_idle()

    done = await instance_of(engine, "backoffs", instance.id)
    assert done.status is InstanceStatus.COMPLETE
    assert output_of(done) == f"{backoff} ok"
    assert CALLS[backoff] == 4
    record = await step_named(engine, "backoffs", instance.id, "flaky")
    assert record.state is StepState.COMPLETE
    starts = [a.start for a in record.attempts]
    assert [b - a for a, b in itertools.pairwise(starts)] == expected_gaps
    assert [a.success for a in record.attempts] == [False, False, False, True]
    assert all(a.end is not None and a.end >= a.start for a in record.attempts)
    assert [a.error_name for a in record.attempts] == ["ConnectionError"] * 3 + [None]
    assert record.attempts[1].error_message == f"attempt 2 of {backoff} failed"
    assert record.config is not None
    assert record.config["retries"] == {"limit": 3, "delay": 1_000, "backoff": backoff}


async def test_a_retry_waits_in_the_database_not_in_memory(
    engine: Engine, worker: Worker, clock: FakeClock
) -> None:
    await engine.deploy_class(Backoffs)
    params = {"key": "k", "failures": 1, "limit": 1, "delay": "1 minute", "backoff": "constant"}
    instance = await engine.create_instance("backoffs", params=params)
    start = clock.now_ms()

    await worker.run_until_idle(advance=False)

    waiting = await instance_of(engine, "backoffs", instance.id)
    assert waiting.status is InstanceStatus.WAITING
    assert waiting.ready_at == start + 60_000
    assert waiting.lease_owner is None
    record = await step_named(engine, "backoffs", instance.id, "flaky")
    assert record.state is StepState.RUNNING
    assert record.wake_at == start + 60_000
    assert len(record.attempts) == 1

    await clock.advance(59_999)
    await worker.run_until_idle(advance=False)
    assert CALLS["k"] == 1
    await clock.advance(1)
    await worker.run_until_idle(advance=False)
    assert CALLS["k"] == 2
    assert (await instance_of(engine, "backoffs", instance.id)).status is InstanceStatus.COMPLETE


async def test_last_failed_attempt_errors_the_step(engine: Engine, worker: Worker) -> None:
    await engine.deploy_class(GivesUp)
    instance = await engine.create_instance("gives-up")

    await worker.run_until_idle()

    assert CALLS["hopeless"] == 3  # the first attempt and two retries
    record = await step_named(engine, "gives-up", instance.id, "hopeless")
    assert record.state is StepState.ERRORED
    assert len(record.attempts) == 3
    assert record.error_name == "ConnectionError"
    assert record.error_message == "attempt 3 of hopeless failed"
    failed = await instance_of(engine, "gives-up", instance.id)
    assert failed.status is InstanceStatus.ERRORED
    assert failed.error_name == "ConnectionError"


async def test_non_retryable_error_stops_at_once(engine: Engine, worker: Worker) -> None:
    await engine.deploy_class(NonRetryable)
    instance = await engine.create_instance("non-retryable")

    await worker.run_until_idle()

    assert CALLS["refuse"] == 1
    record = await step_named(engine, "non-retryable", instance.id, "charge")
    assert len(record.attempts) == 1
    assert record.attempts[0].error_name == "CardDeclined"
    failed = await instance_of(engine, "non-retryable", instance.id)
    assert failed.status is InstanceStatus.ERRORED
    assert (failed.error_name, failed.error_message) == ("CardDeclined", "card declined")


async def test_an_attempt_that_outlives_its_timeout_is_retried(
    engine: Engine, worker: Worker, clock: FakeClock
) -> None:
    await engine.deploy_class(TimesOut)
    instance = await engine.create_instance("times-out")

    await asyncio.wait_for(worker.run_until_idle(), timeout=10)

    done = await instance_of(engine, "times-out", instance.id)
    assert done.status is InstanceStatus.COMPLETE
    assert output_of(done) == "second attempt"
    record = await step_named(engine, "times-out", instance.id, "slow")
    first, second = record.attempts
    assert first.success is False
    assert first.error_message is not None
    assert "timed out" in first.error_message
    assert "50 ms" in first.error_message
    assert second.success is True
    assert second.start - first.start == 3_000


async def test_a_caught_step_failure_lets_the_instance_complete(
    engine: Engine, worker: Worker
) -> None:
    await engine.deploy_class(Caught)
    instance = await engine.create_instance("caught")

    await worker.run_until_idle()

    done = await instance_of(engine, "caught", instance.id)
    assert done.status is InstanceStatus.COMPLETE
    assert output_of(done) == {"fallback": True, "why": "ConnectionError"}
    assert CALLS["risky"] == 2


async def test_an_uncaught_failure_errors_the_instance_with_the_original_error(
    engine: Engine, worker: Worker
) -> None:
    await engine.deploy_class(Uncaught)
    instance = await engine.create_instance("uncaught")

    await worker.run_until_idle()

    failed = await instance_of(engine, "uncaught", instance.id)
    assert failed.status is InstanceStatus.ERRORED
    assert failed.error_name == "ValueError"
    assert failed.error_message == "bad input: 42"
    assert failed.output is None
    assert failed.ended_at is not None
    assert CALLS["after"] == 0
