"""Session history in Postgres: one row per session, final counters when it ends."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

import asyncpg
import msgspec

from memanto_server.lib.db import Database


class Executor(Protocol):
    async def execute(self, query: str, *args: Any) -> str: ...
    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]: ...


class HistoryRow(msgspec.Struct, frozen=True):
    session_id: str
    created_at: datetime
    expires_at: datetime
    ended_at: datetime | None
    end_reason: str | None
    stored: int
    retrieved: int
    extensions: int


class DueSession(msgspec.Struct, frozen=True):
    session_id: str
    owner_id: str
    agent_id: str
    expires_at: datetime


# Creates the agent on first activation (the primary key makes concurrent first
# activations of one name meet on one row) and records the new session: $1 owner, $2 agent,
# $3 session id, $4 created, $5 expires, $6 metadata.
START_SESSION = """
WITH agent AS (
    INSERT INTO agents (owner_id, agent_id, last_session_at) VALUES ($1, $2, $4)
    ON CONFLICT (owner_id, agent_id) DO UPDATE SET last_session_at = EXCLUDED.last_session_at
    RETURNING owner_id, agent_id
)
INSERT INTO sessions (session_id, owner_id, agent_id, created_at, expires_at, metadata)
SELECT $3, owner_id, agent_id, $4, $5, $6 FROM agent
"""

# `end_reason IS NULL` makes ending exactly-once: the first ender's reason and counters
# stand, whoever it is (deactivate, a superseding activation, an expiry sweeper). $1 session,
# $2 owner, $3 ended at, $4 reason, $5 final expiry, $6-$8 stored, retrieved, extensions.
END_SESSION = """
UPDATE sessions
SET ended_at = $3, end_reason = $4, expires_at = $5,
    memories_stored = $6, memories_retrieved = $7, extensions = $8
WHERE session_id = $1 AND owner_id = $2 AND end_reason IS NULL
"""

# Remove the row of an activation that did not take effect ($1 session, $2 owner).
FORGET_SESSION = """
DELETE FROM sessions WHERE session_id = $1 AND owner_id = $2
"""

# How a session ended ($1 session, $2 owner): NULL while live or not yet recorded.
END_REASON = """
SELECT end_reason FROM sessions WHERE session_id = $1 AND owner_id = $2
"""

# Sessions whose recorded expiry has passed ($1 now) and that nobody has ended yet, at most
# $2 of them, the longest overdue first. SKIP LOCKED
# lets every instance sweep at once without two of them taking the same row; the row
# lock is held until the sweeping transaction commits.
CLAIM_DUE_SESSIONS = """
SELECT session_id, owner_id::text AS owner_id, agent_id, expires_at
FROM sessions
WHERE end_reason IS NULL AND expires_at <= $1
ORDER BY expires_at
LIMIT $2
FOR UPDATE SKIP LOCKED
"""

# An extension moved the expiry in Redis; the history learns of it when the sweeper looks.
SYNC_EXPIRY = """
UPDATE sessions SET expires_at = $3 WHERE session_id = $1 AND owner_id = $2 AND end_reason IS NULL
"""

# An agent's sessions, newest first, keyset-paged: $1 owner, $2 agent, $3/$4 the
# (created_at, session_id) of the last row shown (NULL for the first page), $5 page size.
LIST_HISTORY = """
SELECT session_id, created_at, expires_at, ended_at, end_reason,
       memories_stored, memories_retrieved, extensions
FROM sessions
WHERE owner_id = $1 AND agent_id = $2
  AND ($3::timestamptz IS NULL OR (created_at, session_id) < ($3::timestamptz, $4::text))
ORDER BY created_at DESC, session_id DESC
LIMIT $5
"""


class SessionRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def start(
        self,
        owner_id: str,
        agent_id: str,
        session_id: str,
        created_at: datetime,
        expires_at: datetime,
        metadata: dict[str, Any] | None,
    ) -> None:
        await self._db.execute(START_SESSION, UUID(owner_id), agent_id, session_id, created_at, expires_at, metadata)

    async def end(
        self,
        owner_id: str,
        session_id: str,
        *,
        ended_at: datetime,
        reason: str,
        expires_at: datetime,
        stored: int,
        retrieved: int,
        extensions: int,
        conn: Executor | None = None,
    ) -> bool:
        """Record how the session ended; False when it was recorded before."""
        status = await (conn or self._db).execute(
            END_SESSION, session_id, UUID(owner_id), ended_at, reason, expires_at, stored, retrieved, extensions
        )
        return status == "UPDATE 1"

    async def forget(self, owner_id: str, session_id: str) -> None:
        await self._db.execute(FORGET_SESSION, session_id, UUID(owner_id))

    async def end_reason(self, owner_id: str, session_id: str) -> str | None:
        """How the session ended: a reason, `"live"` while its row is open, `"gone"` without a row."""
        record = await self._db.fetchrow(END_REASON, session_id, UUID(owner_id))
        if record is None:
            return "gone"
        return record["end_reason"] or "live"

    async def claim_due(self, conn: Executor, now: datetime, limit: int) -> list[DueSession]:
        rows = await conn.fetch(CLAIM_DUE_SESSIONS, now, limit)
        return [DueSession(r["session_id"], r["owner_id"], r["agent_id"], r["expires_at"]) for r in rows]

    async def sync_expiry(self, conn: Executor, owner_id: str, session_id: str, expires_at: datetime) -> None:
        await conn.execute(SYNC_EXPIRY, session_id, UUID(owner_id), expires_at)

    async def history(
        self, owner_id: str, agent_id: str, before: tuple[datetime, str] | None, limit: int
    ) -> list[HistoryRow]:
        created, session_id = before if before else (None, None)
        rows = await self._db.fetch(LIST_HISTORY, UUID(owner_id), agent_id, created, session_id, limit)
        return [
            HistoryRow(
                r["session_id"],
                r["created_at"],
                r["expires_at"],
                r["ended_at"],
                r["end_reason"],
                r["memories_stored"],
                r["memories_retrieved"],
                r["extensions"],
            )
            for r in rows
        ]
