"""Owners and API keys in Postgres."""

from __future__ import annotations

from uuid import UUID

import msgspec

from memanto_server.lib.db import Database


class KeyRecord(msgspec.Struct, frozen=True):
    key_id: str
    owner_id: str
    owner_name: str
    name: str
    prefix: str
    created_at: str
    revoked_at: str | None


# A new owner named $1; its id is generated.
CREATE_OWNER = """
INSERT INTO owners (name) VALUES ($1) RETURNING owner_id
"""

# A key of an owner: $1 key id, $2 owner, $3 name, $4 sha256 of the key, $5 its display prefix.
CREATE_KEY = """
INSERT INTO api_keys (key_id, owner_id, name, key_hash, prefix) VALUES ($1, $2, $3, $4, $5)
"""

# The unique index on key_hash makes this an index lookup; revoked keys never match.
FIND_ACTIVE_KEY_BY_HASH = """
SELECT key_id, owner_id FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL
"""

# Every key with its owner, oldest first, for the admin CLI (never the key or its hash).
LIST_KEYS = """
SELECT k.key_id, k.owner_id::text AS owner_id, o.name AS owner_name, k.name, k.prefix,
       to_char(k.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS created_at,
       to_char(k.revoked_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS revoked_at
FROM api_keys k JOIN owners o USING (owner_id)
ORDER BY k.created_at, k.key_id
"""

# Revoke key $1 once; a second revocation returns nothing.
REVOKE_KEY = """
UPDATE api_keys SET revoked_at = now() WHERE key_id = $1 AND revoked_at IS NULL RETURNING key_id
"""

# Whether a key of id $1 exists, revoked or not.
KEY_EXISTS = """
SELECT EXISTS (SELECT 1 FROM api_keys WHERE key_id = $1)
"""

# Whether an owner of id $1 exists.
OWNER_EXISTS = """
SELECT EXISTS (SELECT 1 FROM owners WHERE owner_id = $1)
"""


class ApiKeyRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create_owner(self, name: str) -> str:
        owner_id: UUID = await self._db.fetchval(CREATE_OWNER, name)
        return str(owner_id)

    async def owner_exists(self, owner_id: str) -> bool:
        return bool(await self._db.fetchval(OWNER_EXISTS, UUID(owner_id)))

    async def create_key(self, *, key_id: str, owner_id: str, name: str, key_hash: bytes, prefix: str) -> None:
        await self._db.execute(CREATE_KEY, key_id, UUID(owner_id), name, key_hash, prefix)

    async def find_active(self, key_hash: bytes) -> tuple[str, str] | None:
        row = await self._db.fetchrow(FIND_ACTIVE_KEY_BY_HASH, key_hash)
        return None if row is None else (row["key_id"], str(row["owner_id"]))

    async def list_keys(self) -> list[KeyRecord]:
        return [KeyRecord(**dict(row)) for row in await self._db.fetch(LIST_KEYS)]

    async def revoke(self, key_id: str) -> bool:
        return await self._db.fetchval(REVOKE_KEY, key_id) is not None

    async def exists(self, key_id: str) -> bool:
        return bool(await self._db.fetchval(KEY_EXISTS, key_id))
