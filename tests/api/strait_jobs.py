"""Jobs the strait-python tests' server runs (deployed with ``stepstone deploy``)."""

from stepstone import job


@job("echo")
async def echo(data):
    return data


@job("add")
def add(data):
    return {"sum": data["a"] + data["b"]}
