"""Session history in Postgres: one row per session, final counters when it ends."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from app.db import Database

# Creates the agent on first activation (the primary key makes concurrent first
# activations of one name meet on one row) and records the new session.
START_SESSION = """
WITH agent AS (
    INSERT INTO agents (owner_id, agent_id, last_session_at) VALUES ($1, $2, $4)
    ON CONFLICT (owner_id, agent_id) DO UPDATE SET last_session_at = EXCLUDED.last_session_at
    RETURNING owner_id, agent_id
)
INSERT INTO sessions (session_id, owner_id, agent_id, created_at, expires_at, metadata)
SELECT $3, owner_id, agent_id, $4, $5, $6 FROM agent
"""

# `end_reason IS NULL` makes ending idempotent: the first ender's reason and counters stand.
END_SESSION = """
UPDATE sessions
SET ended_at = $3, end_reason = $4, expires_at = $5,
    memories_stored = $6, memories_retrieved = $7, extensions = $8
WHERE session_id = $1 AND owner_id = $2 AND end_reason IS NULL
"""

FORGET_SESSION = """
DELETE FROM sessions WHERE session_id = $1 AND owner_id = $2
"""

END_REASON = """
SELECT end_reason FROM sessions WHERE session_id = $1 AND owner_id = $2
"""


class SessionRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def start(
        self, owner_id: str, agent_id: str, session_id: str, created_at: datetime, expires_at: datetime,
        metadata: dict[str, Any] | None,
    ) -> None:
        await self._db.execute(START_SESSION, UUID(owner_id), agent_id, session_id, created_at, expires_at, metadata)

    async def end(
        self, owner_id: str, session_id: str, *, ended_at: datetime, reason: str, expires_at: datetime,
        stored: int, retrieved: int, extensions: int,
    ) -> None:
        await self._db.execute(
            END_SESSION, session_id, UUID(owner_id), ended_at, reason, expires_at, stored, retrieved, extensions
        )

    async def forget(self, owner_id: str, session_id: str) -> None:
        await self._db.execute(FORGET_SESSION, session_id, UUID(owner_id))

    async def end_reason(self, owner_id: str, session_id: str) -> str | None:
        return await self._db.fetchval(END_REASON, session_id, UUID(owner_id))
