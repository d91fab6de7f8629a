"""What graph steps reach outside the run: jobs (Python functions or HTTP endpoints) and child
runs. Each call happens inside a durable step, so its result is committed once."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from stepstone.domain import jsonvalue
from stepstone.domain.errors import DuplicateInstanceError
from stepstone.domain.records import Instance, TriggerSource
from stepstone.graph import MAX_NESTING_DEPTH
from stepstone.runtime.clock import Clock
from stepstone.runtime.loader import VersionLoader
from stepstone.sdk.errors import NonRetryableError
from stepstone.storage.base import NewInstance, Store

RETRIED_STATUSES = frozenset({408, 429})
"""HTTP answers worth another attempt besides 5xx: the endpoint was busy, not wrong."""
_CHILD_IDS = uuid.UUID("8f6c2a43-3b1e-4c55-9d8a-1f0e5b7c2d91")


class RetryableJobError(Exception):
    """A job's endpoint answered with a status worth another attempt."""


class GraphServices:
    """Shared by every graph run a worker drives."""

    def __init__(
        self,
        store: Store,
        loader: VersionLoader,
        clock: Clock,
        *,
        created: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.loader = loader
        self.clock = clock
        self._created = created
        """Tells this process's worker that a child run is ready to claim."""
        self._http: httpx.AsyncClient | None = None

    async def run_job(self, tenant: str, job_id: str, payload: Any, timeout_s: float) -> Any:
        """Run job ``job_id`` with ``payload``: an ``http(s)://`` URL is POSTed the payload; any
        other id names a function a deployed script registered with ``@stepstone.job``."""
        if job_id.startswith(("http://", "https://")):
            return await self._call_endpoint(job_id, payload, timeout_s)
        found = await self.store.get_job(tenant, job_id)
        if found is None:
            raise NonRetryableError(f"no job named {job_id!r} is registered in this project")
        script = await self.store.get_script(tenant, found.script_name)
        if script is None:
            raise NonRetryableError(f"job {job_id!r}: its script {found.script_name!r} is gone")
        fn = self.loader.load_function(
            script.archive, script.source_hash, found.module, found.function
        )
        if inspect.iscoroutinefunction(fn):
            return await fn(payload)
        result = await asyncio.to_thread(fn, payload)
        if inspect.isawaitable(result):
            return await result
        return result

    async def _call_endpoint(self, url: str, payload: Any, timeout_s: float) -> Any:
        if self._http is None:
            self._http = httpx.AsyncClient(follow_redirects=True)
        try:
            response = await self._http.post(url, json=payload, timeout=timeout_s)
        except httpx.HTTPError as exc:  # unreachable, reset, timed out: try again
            raise RetryableJobError(f"POST {url} failed: {type(exc).__name__}: {exc}") from None
        status = response.status_code
        if 200 <= status < 300:
            if not response.content:
                return None
            try:
                return response.json()
            except ValueError:
                return response.text
        detail = f"POST {url} answered {status}: {response.text[:500]}"
        if status in RETRIED_STATUSES or status >= 500:
            raise RetryableJobError(detail)
        raise NonRetryableError(detail)

    async def start_child(
        self, parent: Instance, step_ref: str, workflow_id: str, payload: Any, max_depth: int
    ) -> str:
        """Start (once) the child run of ``parent``'s ``step_ref``; its id. The id is derived
        from the parent's, so a start repeated after a crash finds the child it made."""
        depth = parent.depth + 1
        limit = min(max_depth, MAX_NESTING_DEPTH)
        if depth > limit:
            raise NonRetryableError(
                f"step {step_ref!r}: a child run would be nested {depth} deep; the limit is {limit}"
            )
        workflow = await self.store.get_workflow_by_id(workflow_id)
        if workflow is None or workflow.tenant != parent.tenant:
            raise NonRetryableError(f"step {step_ref!r}: no workflow with id {workflow_id!r}")
        if workflow.current_version_id is None:
            raise NonRetryableError(f"step {step_ref!r}: workflow {workflow.name!r} has no version")
        child_id = str(uuid.uuid5(_CHILD_IDS, f"{parent.tenant}/{parent.id}/{step_ref}"))
        child = NewInstance(
            workflow_id=workflow.id,
            version_id=workflow.current_version_id,
            tenant=parent.tenant,
            id=child_id,
            params=jsonvalue.encode(payload, what=f"the input of step {step_ref!r}"),
            trigger_source=TriggerSource.BINDING,
            parent_pk=parent.pk,
            parent_step=step_ref,
            triggered_by="workflow",
            depth=depth,
            tags=parent.tags,
            created_by=parent.created_by,
        )
        # A duplicate was made by an earlier attempt whose result was not committed.
        with contextlib.suppress(DuplicateInstanceError):
            await self.store.create_instances([child], self.clock.now_ms())
            if self._created is not None:
                self._created()
        return child_id

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None
