"""Jobs the graph-run tests deploy (``@job``): they record what they saw, in ``support``
(this file is imported from its stored archive, apart from the test's own modules)."""

from stepstone import NonRetryableError, job
from tests.graph_runs.support import PEAK, SPANS, TIMELINE


@job("echo")
async def echo(data):
    TIMELINE.append(("run", data.get("me", "?") if isinstance(data, dict) else "?"))
    return data


@job("add")
def add(data):
    return {"sum": data["a"] + data["b"]}


@job("boom")
def boom(data):
    raise NonRetryableError("it went boom")


@job("flaky")
def flaky(data):
    """Fails every time, but may be tried again."""
    TIMELINE.append(("fail", data.get("me", "?") if isinstance(data, dict) else "?"))
    raise RuntimeError("not yet")


@job("slow")
async def slow(data):
    """Holds its slot for a few loop turns, noting how many jobs ran at once."""
    import asyncio
    import time

    PEAK["now"] += 1
    PEAK["peak"] = max(PEAK["peak"], PEAK["now"])
    start = time.monotonic()
    for _ in range(5):
        await asyncio.sleep(0.005)
    PEAK["now"] -= 1
    SPANS.append((data.get("me", "?"), start, time.monotonic()))
    return {"me": data.get("me")}


@job("undo")
def undo(data):
    TIMELINE.append(("undo", data["step_ref"]))
    return None
