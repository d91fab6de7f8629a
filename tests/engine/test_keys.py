"""API keys: issued once in clear, stored hashed, refused alike for every wrong cause."""

from __future__ import annotations

import hashlib
from dataclasses import fields
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from stepstone.domain.errors import AuthenticationError, PermissionDeniedError, ValidationError
from stepstone.domain.records import ApiKey
from stepstone.domain.scopes import Scope
from stepstone.engine.keys import KeyService, require
from stepstone.runtime.clock import FakeClock
from stepstone.storage.sql import SqlStore


@pytest.fixture
def keys(store: SqlStore, clock: FakeClock) -> KeyService:
    return KeyService(store, clock)


async def refused(keys: KeyService, token: str) -> str:
    with pytest.raises(AuthenticationError) as caught:
        await keys.authenticate(token)
    return caught.value.message


async def test_a_created_key_authenticates_as_its_tenant_and_scopes(
    keys: KeyService, clock: FakeClock
) -> None:
    key, token = await keys.create("acme", ["workflows:read", "workflows:execute"], name="ci")
    assert token.startswith(f"sk_{key.id}_")
    assert len(key.id) == 12
    assert int(key.id, 16) >= 0
    found = await keys.authenticate(token)
    assert found == key
    assert (found.tenant, found.scopes, found.name) == (
        "acme",
        ("workflows:read", "workflows:execute"),
        "ci",
    )
    assert found.created_at == clock.now_ms()


async def test_every_bad_token_is_refused_with_the_same_message(keys: KeyService) -> None:
    key, token = await keys.create("acme", ["admin"])
    other, _ = await keys.create("acme", ["admin"])
    secret = token.split("_", 2)[2]
    wrong_secret = f"sk_{key.id}_{secret[:-1]}{'A' if secret[-1] != 'A' else 'B'}"
    unknown_id = f"sk_{'0' * 12 if key.id != '0' * 12 else '1' * 12}_{secret}"
    someone_elses = f"sk_{other.id}_{secret}"
    malformed = ["", "sk_", token[3:], f"pk_{key.id}_{secret}", token + " ", token + "!", "x" * 500]
    messages = {
        await refused(keys, bad) for bad in [wrong_secret, unknown_id, someone_elses, *malformed]
    }
    await keys.revoke(key.id)
    messages.add(await refused(keys, token))
    assert messages == {"Missing or invalid API key."}


async def test_revoke_takes_effect_at_once_and_is_listed(
    keys: KeyService, clock: FakeClock
) -> None:
    key, token = await keys.create("acme", ["workflows:read"])
    assert (await keys.authenticate(token)).id == key.id
    await clock.advance(5)
    revoked = await keys.revoke(key.id)
    assert revoked.revoked_at == clock.now_ms()
    await refused(keys, token)
    again = await keys.revoke(key.id)  # harmless, keeps the first time
    assert again.revoked_at == revoked.revoked_at
    [listed] = await keys.list("acme")
    assert listed.revoked_at == revoked.revoked_at


async def test_list_filters_by_tenant(keys: KeyService) -> None:
    a, _ = await keys.create("a", ["admin"])
    b, _ = await keys.create("b", ["admin"])
    assert [k.id for k in await keys.list("a")] == [a.id]
    assert {k.id for k in await keys.list()} == {a.id, b.id}
    assert await keys.list("nobody") == []


@pytest.mark.parametrize(
    ("tenant", "scopes", "message"),
    [
        ("", ["admin"], "tenant must be a non-empty string"),
        ("a" * 129, ["admin"], "longer than 128"),
        ("a b", ["admin"], "may contain only letters"),
        ("acme\n", ["admin"], "may contain only letters"),
        ("acme", [], "at least one scope"),
        ("acme", ["workflows:delete"], "unknown scope 'workflows:delete'"),
    ],
)
async def test_bad_tenant_or_scopes_are_refused_clearly(
    keys: KeyService, tenant: str, scopes: list[str], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        await keys.create(tenant, scopes)


async def test_require_checks_the_scope_and_admin_allows_all(keys: KeyService) -> None:
    reader, _ = await keys.create("acme", ["workflows:read"])
    admin, _ = await keys.create("acme", ["admin"])
    require(reader, Scope.READ)
    with pytest.raises(PermissionDeniedError, match="workflows:write") as caught:
        require(reader, Scope.WRITE)
    assert caught.value.code == "forbidden"
    for scope in Scope:
        require(admin, scope)


def database_bytes(folder: Path) -> dict[str, bytes]:
    """The SQLite file and any WAL or journal beside it, byte for byte."""
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.name.startswith("stepstone.db")}


def database_texts(db_file: Path) -> list[str]:
    """Every value of every row of every table, as text."""
    engine = create_engine(f"sqlite:///{db_file}")
    try:
        with engine.connect() as conn:
            tables = conn.execute(text("SELECT name FROM sqlite_master WHERE type='table'"))
            return [
                str(value)
                for (table,) in tables.all()
                for row in conn.execute(text(f'SELECT * FROM "{table}"'))
                for value in row
            ]
    finally:
        engine.dispose()


async def test_the_clear_key_is_nowhere_in_the_database(
    keys: KeyService, store: SqlStore, tmp_path: Path
) -> None:
    if not store.url.startswith("sqlite"):
        pytest.skip("reads the SQLite file's bytes; the hashing itself is backend-independent")
    key, token = await keys.create("acme", ["admin"], name="deploy", owner="ann")
    secret = token.split("_", 2)[2]
    found = await store.find_key(key.id)
    assert found is not None
    _, stored = found
    assert stored == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in stored
    assert token not in stored
    await store.close()  # checkpoints the WAL into the main file

    files = database_bytes(tmp_path)
    assert stored.encode() in files["stepstone.db"]
    for data in files.values():
        assert secret.encode() not in data
        assert token.encode() not in data
    texts = database_texts(tmp_path / "stepstone.db")
    assert any(stored in t for t in texts)
    assert not any(secret in t or token in t for t in texts)


def test_a_key_record_carries_no_secret_and_no_hash() -> None:
    assert not any("secret" in f.name or "hash" in f.name for f in fields(ApiKey))
