"""Jobs the graph-run tests deploy (``@job``): they record what they saw."""

from stepstone import NonRetryableError, job

from tests.graph_runs.support import TIMELINE


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
