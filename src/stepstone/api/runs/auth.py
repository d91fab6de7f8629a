"""Who is calling the workflow-runs API: a Bearer key bound to one project (a tenant)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import Request

from stepstone.api.cloudflare.auth import bearer_token
from stepstone.domain.errors import NotFoundError
from stepstone.domain.scopes import Scope
from stepstone.engine import DEFAULT_TENANT, Engine
from stepstone.engine.keys import KeyService, require


@dataclass(frozen=True, slots=True)
class Caller:
    tenant: str
    engine: Engine
    who: str | None
    """The key's owner (or name): who created a run, who approved a step."""
    open_access: bool = False

    def check_project(self, project_id: str | None) -> None:
        """A project named in a request must be the key's; another answers 404, as one that
        does not exist does (with open access every project is the local tenant)."""
        if project_id is not None and project_id != self.tenant and not self.open_access:
            raise NotFoundError(f"project {project_id!r} not found")


def caller(scope: Scope) -> Callable[[Request], Awaitable[Caller]]:
    async def dependency(request: Request) -> Caller:
        engine: Engine = request.app.state.engine
        if request.app.state.open_access:
            return Caller(DEFAULT_TENANT, engine, None, open_access=True)
        key = await KeyService(engine.store, engine.clock).authenticate(bearer_token(request))
        require(key, scope)
        return Caller(key.tenant, engine, key.owner or key.name)

    return dependency
