"""Agents in Postgres, always scoped to their owner."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

import asyncpg
import msgspec

from memanto_server.lib.db import Database


class AgentRow(msgspec.Struct, frozen=True):
    agent_id: str
    description: str | None
    created_at: datetime
    last_session_at: datetime | None


class AgentCounts(msgspec.Struct, frozen=True):
    row: AgentRow
    memory_count: int
    session_count: int


# The primary key (owner_id, agent_id) is the guard: a second create of one name inserts nothing.
CREATE_AGENT = """
INSERT INTO agents (owner_id, agent_id, description) VALUES ($1, $2, $3)
ON CONFLICT (owner_id, agent_id) DO NOTHING
RETURNING agent_id, description, created_at, last_session_at
"""

# A page of an owner's agents ($1 owner, $2 the last agent id of the page before or NULL, $3
# rows). Keyset pagination on the primary key: stable under concurrent inserts.
LIST_AGENTS = """
SELECT agent_id, description, created_at, last_session_at
FROM agents
WHERE owner_id = $1 AND ($2::text IS NULL OR agent_id > $2)
ORDER BY agent_id
LIMIT $3
"""

# One agent of an owner with its memory and session counts ($1 owner, $2 agent).
GET_AGENT = """
SELECT a.agent_id, a.description, a.created_at, a.last_session_at,
       (SELECT count(*) FROM memories m WHERE m.owner_id = a.owner_id AND m.agent_id = a.agent_id) AS memory_count,
       (SELECT count(*) FROM sessions s WHERE s.owner_id = a.owner_id AND s.agent_id = a.agent_id) AS session_count
FROM agents a
WHERE a.owner_id = $1 AND a.agent_id = $2
"""

# Whether the owner ($1) has an agent of that name ($2).
AGENT_EXISTS = """
SELECT EXISTS (SELECT 1 FROM agents WHERE owner_id = $1 AND agent_id = $2)
"""

# Memories and session history go with the agent (ON DELETE CASCADE).
DELETE_AGENT = """
DELETE FROM agents WHERE owner_id = $1 AND agent_id = $2 RETURNING agent_id
"""


def _row(record: asyncpg.Record) -> AgentRow:
    return AgentRow(record["agent_id"], record["description"], record["created_at"], record["last_session_at"])


class AgentRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, owner_id: str, agent_id: str, description: str | None) -> AgentRow | None:
        """The new agent, or None when the owner already has one of that name."""
        record = await self._db.fetchrow(CREATE_AGENT, UUID(owner_id), agent_id, description)
        return None if record is None else _row(record)

    async def list(self, owner_id: str, after: str | None, limit: int) -> list[AgentRow]:
        return [_row(r) for r in await self._db.fetch(LIST_AGENTS, UUID(owner_id), after, limit)]

    async def get(self, owner_id: str, agent_id: str) -> AgentCounts | None:
        record = await self._db.fetchrow(GET_AGENT, UUID(owner_id), agent_id)
        if record is None:
            return None
        return AgentCounts(_row(record), record["memory_count"], record["session_count"])

    async def exists(self, owner_id: str, agent_id: str) -> bool:
        return bool(await self._db.fetchval(AGENT_EXISTS, UUID(owner_id), agent_id))

    async def delete(self, owner_id: str, agent_id: str) -> bool:
        return await self._db.fetchval(DELETE_AGENT, UUID(owner_id), agent_id) is not None
