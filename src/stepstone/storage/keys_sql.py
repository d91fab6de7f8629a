"""API key queries, mixed into ``SqlStore``: rare, small rows, kept apart from the hot path.

Only a hash of each secret reaches the database; these queries never see the secret itself.
"""

from __future__ import annotations

import json

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from stepstone.domain.errors import ConflictError
from stepstone.domain.records import ApiKey
from stepstone.storage import rows
from stepstone.storage.database import Database
from stepstone.storage.dialect import Dialect
from stepstone.storage.tables import api_keys


class KeyQueries:
    """Store operations on ``api_keys``; the class that mixes this in provides ``_db``."""

    _db: Database
    _dialect: Dialect

    async def add_key(self, key: ApiKey, secret_hash: str) -> None:
        """Insert ``key``; a ``ConflictError`` if its id is taken (the caller draws another)."""
        values = {
            "id": key.id,
            "tenant": key.tenant,
            "name": key.name,
            "owner": key.owner,
            "secret_hash": secret_hash,
            "scopes": json.dumps(list(key.scopes)),
            "created_at": key.created_at,
            "revoked_at": key.revoked_at,
        }

        def tx(conn: Connection) -> None:
            conn.execute(insert(api_keys).values(**values))

        try:
            await self._db.write(tx)
        except IntegrityError as exc:
            if self._dialect.is_unique_violation(exc):
                raise ConflictError(f"an API key with id {key.id!r} already exists") from None
            raise

    async def find_key(self, key_id: str) -> tuple[ApiKey, str] | None:
        """The key and its stored secret hash, read fresh each time so a revoke takes effect."""
        query = select(api_keys).where(api_keys.c.id == key_id)
        row = await self._db.read(lambda conn: conn.execute(query).one_or_none())
        return None if row is None else (rows.to_key(row), row.secret_hash)

    async def list_keys(self, tenant: str | None) -> list[ApiKey]:
        """Every key (of ``tenant``, if given), oldest first; never their hashes."""
        query = select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)
        if tenant is not None:
            query = query.where(api_keys.c.tenant == tenant)
        found = await self._db.read(lambda conn: conn.execute(query).all())
        return [rows.to_key(r) for r in found]

    async def revoke_key(self, key_id: str, now: int) -> bool:
        """Revoke a live key; ``False`` if it is unknown or already revoked."""
        statement = (
            update(api_keys)
            .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        return await self._db.write(lambda conn: conn.execute(statement).rowcount == 1)
