"""``WorkflowStep`` made durable: each call is matched to history or executed and committed."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from stepstone.domain import jsonvalue
from stepstone.domain.durations import Duration, to_ms
from stepstone.domain.errors import StepstoneError, ValidationError
from stepstone.domain.limits import DEFAULT_WAIT_TIMEOUT_MS
from stepstone.domain.records import Attempt, StepRecord, StepState, StepType
from stepstone.domain.retry import StepConfig, parse_step_config, shared_json
from stepstone.sdk.entrypoint import ReceivedEvent, RollbackContext, StepContext, WorkflowStep
from stepstone.sdk.errors import NonRetryableError, StepFailedError, WaitForEventTimeoutError

if TYPE_CHECKING:
    from stepstone.runtime.executor import InstanceRun

_MAX_NAME = 255


@dataclass(slots=True)
class Compensation:
    """A completed step's rollback, registered in step-start order."""

    seq: int
    name: str
    count: int
    fn: Callable[[RollbackContext], Any]
    output: Any
    config: StepConfig


def error_name(exc: BaseException) -> str:
    name = getattr(exc, "name", None)
    return name if isinstance(name, str) and name else type(exc).__name__


def error_message(exc: BaseException) -> str:
    message = getattr(exc, "message", None)
    return message if isinstance(message, str) else str(exc)


def to_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


class DurableStep(WorkflowStep):
    """The ``step`` object ``run`` receives."""

    def __init__(self, run: InstanceRun) -> None:
        self._run = run
        self._decorated: dict[str, _StepFunction] = {}
        self.compensations: list[Compensation] = []

    # ------------------------------------------------------------------ do
    def do(self, *args: Any, **kwargs: Any) -> Any:
        name = args[0] if args else kwargs.pop("name", None)
        rest = args[1:]
        fn = rest[0] if rest and callable(rest[0]) else kwargs.pop("fn", None)
        if fn is None:
            config = rest[0] if rest else kwargs.pop("config", None)
            if config is not None and not isinstance(config, Mapping):
                raise ValidationError("step.do's second argument must be a function or a config")
            options = {**(config or {}), **kwargs}
            options.pop("concurrent", None)

            def decorate(func: Callable[..., Any]) -> Callable[[], Awaitable[Any]]:
                step_fn = _StepFunction(self, name or func.__name__, func, options)
                self._decorated[func.__name__] = step_fn
                return step_fn

            return decorate
        if not isinstance(name, str):
            raise ValidationError("step.do needs a step name as its first argument")
        return self._do(name, fn, rest[1:], **kwargs)

    async def _do(
        self,
        name: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        *,
        retries: Mapping[str, Any] | None = None,
        timeout: Duration | None = None,
        sensitive: str | None = None,
        rollback: Callable[[RollbackContext], Any] | None = None,
        rollback_config: Mapping[str, Any] | None = None,
        config: Mapping[str, Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        if config:
            retries = retries if retries is not None else config.get("retries")
            timeout = timeout if timeout is not None else config.get("timeout")
            sensitive = sensitive if sensitive is not None else config.get("sensitive")
        step_config = parse_step_config(retries, timeout, sensitive)
        _check_name(name)
        value, record = await self._execute(
            StepType.STEP, name, fn, args, kwargs or {}, step_config
        )
        if rollback is not None:
            rb_config = step_config
            if rollback_config:
                rb_config = parse_step_config(
                    rollback_config.get("retries"), rollback_config.get("timeout")
                )
            self.compensations.append(
                Compensation(record.seq, name, record.count, rollback, value, rb_config)
            )
        return value

    async def _execute(
        self,
        type: StepType,
        name: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        config: StepConfig,
    ) -> tuple[Any, StepRecord]:
        run = self._run
        count, record = run.history.lookup(name, type)
        if record is not None and record.state is StepState.COMPLETE:
            return jsonvalue.decode(record.output), record
        if record is not None and record.state is StepState.SKIPPED:
            return None, record
        if record is not None and record.state is StepState.ERRORED:
            raise StepFailedError(name, record.error_name or "Error", record.error_message or "")
        if type is not StepType.ROLLBACK:
            run.check_new_work()
        await run.commit_results()  # what the steps before it returned is committed first
        if record is None:
            record = StepRecord(
                name=name,
                count=count,
                type=type,
                state=StepState.RUNNING,
                seq=run.history.next_seq(),
                started_at=run.clock.now_ms(),
                config=shared_json(config),
            )
        if name in run.mocks:
            fn, args, kwargs = _mocked(run.mocks[name]), (), {}
        # A rollback receives its RollbackContext as its argument, never a StepContext.
        is_async, takes_ctx = _shape(fn)
        wants_ctx = type is StepType.STEP and takes_ctx
        while True:
            if record.wake_at is not None:
                await run.wait(record.wake_at)
            if run.pause_requested or run.draining:
                await run.gate()
            attempt_no = len(record.attempts) + 1
            start = run.clock.now_ms()
            call_kwargs = kwargs
            if wants_ctx:
                call_kwargs = {
                    **kwargs,
                    "ctx": StepContext(name, count, attempt_no, config.to_json()),
                }
            run.activity_started()
            try:
                failure: Exception | None = None
                try:
                    result = await _call(fn, is_async, args, call_kwargs, config.timeout_ms)
                    text = jsonvalue.encode(result, what=f"the output of step {name!r}")
                except Exception as exc:
                    failure = exc
                end = run.clock.now_ms()
                if failure is None:
                    record = StepRecord(
                        name=name,
                        count=count,
                        type=type,
                        state=StepState.COMPLETE,
                        seq=record.seq,
                        started_at=record.started_at,
                        ended_at=end,
                        config=record.config,
                        attempts=(*record.attempts, Attempt(start, end, True)),
                        output=text,
                    )
                    run.settle(record)
                    return json.loads(text), record
                attempt = Attempt(start, end, False, error_name(failure), error_message(failure))
                final = (
                    isinstance(failure, NonRetryableError | StepstoneError)
                    or attempt_no >= config.max_attempts
                )
                if final:
                    record = replace(
                        record,
                        state=StepState.ERRORED,
                        attempts=(*record.attempts, attempt),
                        ended_at=end,
                        wake_at=None,
                        error_name=attempt.error_name,
                        error_message=attempt.error_message,
                    )
                    await run.save(record)
                    raise StepFailedError(
                        name, attempt.error_name or "Error", attempt.error_message or ""
                    ) from failure
                record = replace(
                    record,
                    attempts=(*record.attempts, attempt),
                    wake_at=end + config.retries.delay_before(attempt_no),
                )
                await run.save(record)
            finally:
                run.activity_ended()

    async def run_compensation(self, comp: Compensation, error: BaseException) -> None:
        context = RollbackContext(
            step_name=comp.name,
            step_count=comp.count,
            output=comp.output,
            error=error,
            config=comp.config.to_json(),
        )
        await self._execute(
            StepType.ROLLBACK, f"rollback:{comp.name}", comp.fn, (context,), {}, comp.config
        )

    # ------------------------------------------------------------------ for the graph interpreter
    def recorded(self, name: str) -> StepRecord | None:
        """What history holds for step ``name`` (first occurrence), not counting a call."""
        return self._run.history.peek(name)

    async def skip(self, name: str, reason: str) -> None:
        """Record step ``name`` as skipped (settled without running), unless it is recorded."""
        _check_name(name)
        run = self._run
        count, record = run.history.lookup(name, StepType.STEP)
        if record is not None:
            return
        now = run.clock.now_ms()
        await run.save(
            StepRecord(
                name=name,
                count=count,
                type=StepType.STEP,
                state=StepState.SKIPPED,
                seq=run.history.next_seq(),
                started_at=now,
                ended_at=now,
                error_message=reason,
            )
        )

    # ------------------------------------------------------------------ sleeps
    async def sleep(self, name: str, duration: Duration) -> None:
        ms = to_ms(duration, what=f"the duration of sleep {name!r}")
        await self._sleep(name, lambda now: now + ms)

    async def sleep_until(self, name: str, when: datetime | int | float) -> None:
        if isinstance(when, datetime):
            if when.tzinfo is None:
                raise ValidationError("sleep_until needs a timezone-aware datetime (or epoch ms)")
            target = int(when.timestamp() * 1000)
        elif isinstance(when, int | float) and not isinstance(when, bool):
            target = int(when)
        else:
            raise ValidationError("sleep_until takes a datetime or epoch milliseconds")
        await self._sleep(name, lambda _now: target)

    async def _sleep(self, name: str, deadline: Callable[[int], int]) -> None:
        _check_name(name)
        run = self._run
        count, record = run.history.lookup(name, StepType.SLEEP)
        if record is None or record.state is StepState.WAITING:
            run.check_new_work()
        if record is None:
            now = run.clock.now_ms()
            await run.gate()
            record = StepRecord(
                name=name,
                count=count,
                type=StepType.SLEEP,
                state=StepState.WAITING,
                seq=run.history.next_seq(),
                started_at=now,
                wake_at=deadline(now),
            )
            run.defer(record)
        if record.state is StepState.WAITING and record.wake_at is not None:
            if record.wake_at > run.clock.now_ms():  # replayed after its end: nothing to wait
                await run.wait(record.wake_at)
            run.defer(record.completed_at(record.wake_at))

    # ------------------------------------------------------------------ events
    async def wait_for_event(
        self, name: str, *, type: str, timeout: Duration | None = None
    ) -> ReceivedEvent:
        _check_name(name)
        if not isinstance(type, str) or not type:
            raise ValidationError("wait_for_event needs an event type")
        run = self._run
        count, record = run.history.lookup(name, StepType.WAIT_FOR_EVENT)
        if record is None or record.state is StepState.WAITING:
            run.check_new_work()
        if record is None:
            now = run.clock.now_ms()
            ms = DEFAULT_WAIT_TIMEOUT_MS if timeout is None else to_ms(timeout, what="timeout")
            await run.gate()
            record = StepRecord(
                name=name,
                count=count,
                type=StepType.WAIT_FOR_EVENT,
                state=StepState.WAITING,
                seq=run.history.next_seq(),
                started_at=now,
                wake_at=now + ms,
                event_type=type,
            )
            await run.save(record)
        if record.state is StepState.WAITING:
            waiting = record
            taken: StepRecord | None = None

            async def arrived() -> bool:
                nonlocal taken
                taken = await run.take_event(waiting)
                return taken is not None

            assert record.wake_at is not None
            if not await run.wait(record.wake_at, arrived, event_type=type):
                message = f"no {type!r} event arrived within the timeout"
                record = replace(
                    record,
                    state=StepState.ERRORED,
                    ended_at=run.clock.now_ms(),
                    error_name="WaitForEventTimeoutError",
                    error_message=message,
                )
                await run.save(record)
            elif taken is not None:
                record = taken
        if record.state is StepState.ERRORED:
            raise WaitForEventTimeoutError(
                name, record.error_name or "WaitForEventTimeoutError", record.error_message or ""
            )
        data = jsonvalue.decode(record.output)
        return ReceivedEvent(
            type=data["type"], payload=data["payload"], timestamp=to_datetime(data["timestamp"])
        )


class _StepFunction:
    """A function decorated with ``@step.do(...)``: awaiting its call runs the step once.

    Parameters named after earlier decorated steps receive their results (Cloudflare's
    dependency injection); a parameter named ``ctx`` receives the ``StepContext``.
    """

    def __init__(
        self, step: DurableStep, name: str, fn: Callable[..., Any], options: Mapping[str, Any]
    ) -> None:
        self._step = step
        self._name = name
        self._fn = fn
        self._options = dict(options)
        self._lock = asyncio.Lock()
        self._done = False
        self._value: Any = None

    async def __call__(self) -> Any:
        async with self._lock:
            if not self._done:
                self._value = await self._run()
                self._done = True
        return self._value

    async def _run(self) -> Any:
        kwargs: dict[str, Any] = {}
        for param in inspect.signature(self._fn).parameters:
            dependency = self._step._decorated.get(param)
            if dependency is not None and dependency is not self:
                kwargs[param] = await dependency()
        return await self._step._do(self._name, self._fn, (), kwargs=kwargs, **self._options)


class StepTimeoutError(Exception):
    """An attempt ran longer than the step's timeout."""


async def _call(
    fn: Callable[..., Any],
    is_async: bool,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    timeout_ms: int,
) -> Any:
    """Run one attempt, sync functions in a thread, bounded by ``timeout_ms``.

    A timed-out thread cannot be stopped; its result is discarded.
    """
    try:
        async with asyncio.timeout(timeout_ms / 1000) as scope:
            if is_async:
                return await fn(*args, **kwargs)
            result = await asyncio.to_thread(fn, *args, **kwargs)
            if inspect.isawaitable(result):
                return await result
            return result
    except TimeoutError:
        if scope.expired():
            raise StepTimeoutError(f"the attempt timed out after {timeout_ms:,} ms") from None
        raise


def _mocked(value: Any) -> Callable[[], Any]:
    """A stand-in step function: returns ``value``, or raises it if it is an exception."""

    def mocked() -> Any:
        if isinstance(value, BaseException):
            raise value
        return value

    return mocked


_SHAPES: weakref.WeakKeyDictionary[Callable[..., Any], tuple[bool, bool]] = (
    weakref.WeakKeyDictionary()
)
"""Whether a step function is a coroutine function, and whether it has a ``ctx`` parameter;
reading a signature costs more than a no-op step, and the same functions run again and again."""


def _shape(fn: Callable[..., Any]) -> tuple[bool, bool]:
    try:
        return _SHAPES[fn]
    except (KeyError, TypeError):  # TypeError: not weakly referenceable (a builtin, say)
        pass
    try:
        takes = "ctx" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        takes = False
    shape = (inspect.iscoroutinefunction(fn), takes)
    with contextlib.suppress(TypeError):
        _SHAPES[fn] = shape
    return shape


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name or len(name) > _MAX_NAME:
        raise ValidationError(f"a step name must be a string of 1 to {_MAX_NAME} characters")
