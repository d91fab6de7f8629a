"""Cron schedules: exact next fire times, one instance per tick, one catch-up after downtime."""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime

from croniter import croniter

from stepstone.domain.records import TriggerSource
from stepstone.runtime.clock import Clock
from stepstone.runtime.signals import Notifier
from stepstone.storage.base import NewInstance, Store

log = logging.getLogger(__name__)


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def next_fire(cron: str, after_ms: int) -> int:
    """The first tick of ``cron`` strictly after ``after_ms`` (UTC), in epoch milliseconds."""
    return int(croniter(cron, _dt(after_ms)).get_next(datetime).timestamp() * 1000)


def latest_fire(cron: str, at_or_before_ms: int) -> int:
    """The last tick of ``cron`` at or before ``at_or_before_ms``."""
    return int(croniter(cron, _dt(at_or_before_ms + 1)).get_prev(datetime).timestamp() * 1000)


def cron_instance_id(cron: str, scheduled_ms: int) -> str:
    digest = hashlib.sha256(cron.encode()).hexdigest()[:8]
    return f"cron-{digest}-{scheduled_ms}"


async def fire_due(store: Store, clock: Clock, notifier: Notifier, *, limit: int = 100) -> int:
    """Start one instance for each due schedule; return how many this process started.

    A schedule missed for a while (the server was down) fires once, for its latest missed tick,
    and moves on to the next future tick: a catch-up, not a storm. Workers race for a tick by
    compare-and-set on its ``next_at``; exactly one wins.
    """
    now = clock.now_ms()
    started = 0
    for due in await store.due_schedules(now, limit):
        scheduled = latest_fire(due.cron, now)
        next_at = next_fire(due.cron, now)
        if due.version_id is None:
            continue
        instance = NewInstance(
            workflow_id=due.workflow_id,
            version_id=due.version_id,
            tenant=due.tenant,
            id=cron_instance_id(due.cron, scheduled),
            params="{}",
            trigger_source=TriggerSource.CRON,
            schedule={"cron": due.cron, "scheduledTime": scheduled},
        )
        if await store.fire_schedule(due, next_at, instance, now) is not None:
            started += 1
            log.info("cron %r started %s", due.cron, instance.id)
    if started:
        notifier.work_available()
    return started
