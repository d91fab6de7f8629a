"""Tenants' API keys: issue, authenticate, list and revoke. Only hashes of secrets are stored.

A key reads ``sk_<id>_<secret>``: the id finds its row in one primary-key read and the secret is
checked against the stored SHA-256. Secrets are 256 random bits, so there is nothing for a slow
KDF to protect against, and every request stays cheap. Nothing is cached, so a revoke takes
effect on the very next request, in every process.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable

from stepstone.domain.errors import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    ValidationError,
)
from stepstone.domain.ids import check_tenant
from stepstone.domain.records import ApiKey
from stepstone.domain.scopes import Scope, allows, parse_scopes
from stepstone.runtime.clock import Clock, SystemClock
from stepstone.storage.base import Store

KEY_PREFIX = "sk"
_TOKEN = re.compile(r"sk_([0-9a-f]{12})_([A-Za-z0-9_-]{1,128})")
"""The id is fixed-width hex, so a secret may itself hold '_' (token_urlsafe draws it)."""
_MAX_LABEL = 255
_ID_ATTEMPTS = 5


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _label(value: str | None, what: str) -> str | None:
    if value is not None and len(value) > _MAX_LABEL:
        raise ValidationError(f"a key's {what} is longer than {_MAX_LABEL} characters")
    return value


def require(key: ApiKey, scope: Scope) -> None:
    """Raise ``PermissionDeniedError`` unless ``key`` grants ``scope`` (``admin`` grants all)."""
    if not allows(key.scopes, scope):
        raise PermissionDeniedError(f"this API key lacks the {scope.value!r} scope")


class KeyService:
    """What `stepstone keys` and every HTTP family's auth do with keys, over one store."""

    def __init__(self, store: Store, clock: Clock | None = None) -> None:
        self.store = store
        self.clock = clock or SystemClock()

    async def create(
        self,
        tenant: str,
        scopes: Iterable[str],
        name: str | None = None,
        owner: str | None = None,
    ) -> tuple[ApiKey, str]:
        """Issue a key; the clear key is returned here once and never stored."""
        tenant = check_tenant(tenant)
        granted = tuple(s.value for s in parse_scopes(scopes))
        label = _label(name, "name") or ""
        owner = _label(owner, "owner")
        for _ in range(_ID_ATTEMPTS):  # 48-bit ids: a clash is rare, but must not fail a create
            key_id = secrets.token_hex(6)
            secret = secrets.token_urlsafe(32)
            key = ApiKey(
                id=key_id,
                tenant=tenant,
                name=label,
                scopes=granted,
                created_at=self.clock.now_ms(),
                owner=owner,
            )
            try:
                await self.store.add_key(key, _digest(secret))
            except ConflictError:
                continue
            return key, f"{KEY_PREFIX}_{key_id}_{secret}"
        raise ConflictError("could not draw an unused key id; try again")

    async def authenticate(self, token: str) -> ApiKey:
        """The live key ``token`` names, or ``AuthenticationError`` with one message for every
        cause, so a caller cannot tell an unknown key from a revoked one or a wrong secret."""
        match = _TOKEN.fullmatch(token) if isinstance(token, str) else None
        if match is None:
            raise AuthenticationError()
        key_id, secret = match.group(1, 2)
        found = await self.store.find_key(key_id)
        if found is None:
            raise AuthenticationError()
        key, stored = found
        if not hmac.compare_digest(_digest(secret), stored) or key.revoked_at is not None:
            raise AuthenticationError()
        return key

    async def revoke(self, key_id: str, *, tenant: str | None = None) -> ApiKey:
        """Revoke a key (again is harmless); with ``tenant``, only one of that tenant's keys."""
        found = await self.store.find_key(key_id)
        if found is None or (tenant is not None and found[0].tenant != tenant):
            raise NotFoundError(f"API key {key_id!r} not found")
        await self.store.revoke_key(key_id, self.clock.now_ms())
        found = await self.store.find_key(key_id)
        if found is None:  # deleted in between: as good as revoked
            raise NotFoundError(f"API key {key_id!r} not found")
        return found[0]

    async def list(self, tenant: str | None = None) -> builtins.list[ApiKey]:
        """Every key (of ``tenant``, if given), revoked ones included, oldest first."""
        return await self.store.list_keys(None if tenant is None else check_tenant(tenant))
