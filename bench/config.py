"""Sizes of each mode, and what one run of the bench was asked to do."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

WORKLOADS = ("sequential", "concurrent", "http_create", "event", "timers", "lists")
ENGINES = ("stepstone", "dbos")
PEER_WORKLOADS = frozenset({"sequential", "concurrent", "event", "timers"})
"""Workloads the peer runs too. DBOS Transact has no HTTP API of its own (so no HTTP start
rate) and no HTTP list endpoint; its event round trip goes through a thin FastAPI route on the
same uvicorn stack Stepstone uses."""


@dataclass(frozen=True, slots=True)
class Sizes:
    sequential: int
    """Workflows of ten no-op steps, one at a time."""
    concurrent: int
    """Workflows of ten no-op steps, started at once."""
    batch_create: int
    """Instances created over HTTP, 100 a request."""
    single_create: int
    """Instances created over HTTP, one a request."""
    events: int
    """Event round trips, one after another."""
    sleepers: int
    """Instances sleeping at once."""
    stored: int
    """Instances stored before the list pages are timed."""
    pages: int
    """Pages timed per list kind."""
    repeats: int
    """Runs per engine of the short workloads (sequential, concurrent, HTTP, events, lists)."""
    slow_repeats: int
    """Runs per engine of the timers workload."""
    sleep_ms: int = 2_000
    batch: int = 100
    http_clients: int = 4
    """Requests in flight at once in the HTTP start-rate workload."""
    child_timeout_s: float = 600.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


QUICK = Sizes(
    sequential=40,
    concurrent=200,
    batch_create=2_000,
    single_create=200,
    events=10,
    sleepers=300,
    stored=20_000,
    pages=20,
    repeats=3,
    slow_repeats=1,
    child_timeout_s=120.0,
)
FULL = Sizes(
    sequential=300,
    concurrent=1_000,
    batch_create=10_000,
    single_create=1_000,
    events=200,
    sleepers=10_000,
    stored=1_000_000,
    pages=50,
    repeats=3,
    slow_repeats=3,
    child_timeout_s=1_800.0,
)
TINY = Sizes(
    sequential=3,
    concurrent=10,
    batch_create=200,
    single_create=10,
    events=3,
    sleepers=5,
    stored=2_000,
    pages=3,
    repeats=1,
    slow_repeats=1,
    sleep_ms=300,
    http_clients=2,
    child_timeout_s=60.0,
)
MODES = {"quick": QUICK, "full": FULL, "tiny": TINY}


@dataclass(frozen=True, slots=True)
class Plan:
    """One invocation: mode, sizes, database kind, durability, peer, workloads."""

    mode: str
    sizes: Sizes
    db: str
    """``sqlite`` or a ``postgresql://`` URL of a server (a database is created per run)."""
    synchronous: str = "NORMAL"
    """SQLite's synchronous level for both engines (ignored on PostgreSQL)."""
    peer: str | None = None
    workloads: tuple[str, ...] = WORKLOADS
    notes: list[str] = field(default_factory=list)

    @property
    def db_kind(self) -> str:
        return "sqlite" if self.db == "sqlite" else "postgresql"

    def engines_for(self, workload: str) -> tuple[str, ...]:
        if self.peer and workload in PEER_WORKLOADS:
            return ("stepstone", self.peer)
        return ("stepstone",)

    def repeats_for(self, workload: str) -> int:
        return self.sizes.slow_repeats if workload == "timers" else self.sizes.repeats
