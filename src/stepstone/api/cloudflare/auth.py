"""Who is calling: a Bearer key bound to one account (tenant), or anyone in local dev mode."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import Request

from stepstone.domain.errors import AuthenticationError, NotFoundError
from stepstone.domain.scopes import Scope
from stepstone.engine import DEFAULT_TENANT, Engine
from stepstone.engine.keys import KeyService, require


@dataclass(frozen=True, slots=True)
class Caller:
    tenant: str
    engine: Engine


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError("missing API key: send 'Authorization: Bearer <key>'")
    return token.strip()


def caller(scope: Scope) -> Callable[[Request, str], Awaitable[Caller]]:
    """A dependency: the caller's tenant, once its key is checked for ``scope``.

    Another tenant's account answers 404, the same as one that does not exist. With open
    access (``stepstone dev``), any token works and every account is the local tenant.
    """

    async def dependency(request: Request, account_id: str) -> Caller:
        engine: Engine = request.app.state.engine
        if request.app.state.open_access:
            return Caller(DEFAULT_TENANT, engine)
        key = await KeyService(engine.store, engine.clock).authenticate(bearer_token(request))
        if key.tenant != account_id:
            raise NotFoundError(f"account {account_id!r} not found")
        require(key, scope)
        return Caller(key.tenant, engine)

    return dependency
