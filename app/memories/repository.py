"""Memories in Postgres, always scoped to owner and agent."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import msgspec

from app.db import Database


class MemoryRow(msgspec.Struct, frozen=True):
    memory_id: str
    content: str
    type: str
    title: str | None
    tags: list[str]
    confidence: float
    score: float
    created_at: datetime
    session_id: str


INSERT_MEMORY = """
INSERT INTO memories (owner_id, agent_id, session_id, type, title, content, tags, confidence, source, metadata)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
RETURNING memory_id, created_at
"""

# websearch_to_tsquery accepts what people type (quotes, OR, -word) and never fails to parse.
# Normalisation 32 maps the rank into [0, 1).
SEARCH_MEMORIES = """
SELECT m.memory_id, m.content, m.type, m.title, m.tags, m.confidence, m.created_at, m.session_id,
       ts_rank_cd(m.search, q.query, 32) AS score
FROM memories m, websearch_to_tsquery('english', $3) AS q(query)
WHERE m.owner_id = $1 AND m.agent_id = $2 AND m.search @@ q.query
  AND ($4::text[] IS NULL OR m.type = ANY($4::text[]))
ORDER BY score DESC, m.created_at DESC, m.memory_id DESC
LIMIT $5
"""


def _memory(record: asyncpg.Record) -> MemoryRow:
    return MemoryRow(
        memory_id=str(record["memory_id"]), content=record["content"], type=record["type"],
        title=record["title"], tags=list(record["tags"]), confidence=float(record["confidence"]),
        score=float(record["score"]), created_at=record["created_at"], session_id=record["session_id"],
    )


class MemoryRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def insert(
        self, owner_id: str, agent_id: str, session_id: str, *, type: str, title: str | None, content: str,
        tags: list[str], confidence: float, source: str | None, metadata: dict[str, Any] | None,
    ) -> tuple[str, datetime]:
        record = await self._db.fetchrow(
            INSERT_MEMORY, UUID(owner_id), agent_id, session_id, type, title, content, tags, confidence, source,
            metadata,
        )
        assert record is not None
        return str(record["memory_id"]), record["created_at"]

    async def search(
        self, owner_id: str, agent_id: str, query: str, types: list[str] | None, limit: int
    ) -> list[MemoryRow]:
        rows = await self._db.fetch(SEARCH_MEMORIES, UUID(owner_id), agent_id, query, types, limit)
        return [_memory(r) for r in rows]
