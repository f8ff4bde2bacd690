"""The memory lifecycle in Postgres: expiry and restore, and the recalls in time (migration 0010).

A memory is about `coalesce(occurred_at, created_at)` and is expired at time T when
`least(expired_at, valid_until) <= T`. Always scoped to owner and agent, like every memory query.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import msgspec

from memanto_server.lib.db import Database
from memanto_server.memories.repository import MemoryRow
from memanto_server.memories.schemas import MemoryFilters

# Expire by hand: kept, left out of recall and answer. Expiring an expired memory keeps its
# first expiry (a retry changes nothing); updated_at marks the change for changed-since.
# $1 owner, $2 agent, $3 memory, $4 reason.
EXPIRE_MEMORY = """
UPDATE memories
SET expired_at = coalesce(expired_at, now()),
    expired_reason = CASE WHEN expired_at IS NULL THEN $4 ELSE expired_reason END,
    updated_at = CASE WHEN expired_at IS NULL THEN now() ELSE updated_at END
WHERE owner_id = $1 AND agent_id = $2 AND memory_id = $3
RETURNING memory_id, agent_id, session_id, type, title, content, tags, confidence, created_at, source, metadata,
       updated_at, occurred_at, valid_until, expired_at, expired_reason, idempotency_key
"""

# Restore: valid again with no end (a passed valid_until is cleared too). A memory that was
# not expired is left as it was. $1 owner, $2 agent, $3 memory.
RESTORE_MEMORY = """
UPDATE memories
SET expired_at = NULL, expired_reason = NULL,
    valid_until = CASE WHEN valid_until <= now() THEN NULL ELSE valid_until END,
    updated_at = CASE WHEN least(expired_at, valid_until) <= now() THEN now() ELSE updated_at END
WHERE owner_id = $1 AND agent_id = $2 AND memory_id = $3
RETURNING memory_id, agent_id, session_id, type, title, content, tags, confidence, created_at, source, metadata,
       updated_at, occurred_at, valid_until, expired_at, expired_reason, idempotency_key
"""

# recall/recent: newest stored first, keyset on (created_at, memory_id) as the memory list.
# $3-$6: the recall filters (NULL = none); $7: include expired; $8, $9: the last row shown.
RECENT_MEMORIES = """
SELECT memory_id, agent_id, session_id, type, title, content, tags, confidence, created_at, source, metadata,
       updated_at, occurred_at, valid_until, expired_at, expired_reason, idempotency_key
FROM memories
WHERE owner_id = $1 AND agent_id = $2
  AND ($3::text[] IS NULL OR type = ANY($3::text[]))
  AND ($4::text[] IS NULL OR tags @> $4::text[])
  AND ($5::timestamptz IS NULL OR created_at > $5::timestamptz)
  AND ($6::timestamptz IS NULL OR created_at < $6::timestamptz)
  AND ($7::boolean OR coalesce(least(expired_at, valid_until) > now(), true))
  AND ($8::timestamptz IS NULL OR (created_at, memory_id) < ($8::timestamptz, $9::uuid))
ORDER BY created_at DESC, memory_id DESC
LIMIT $10
"""

# recall/as-of: what the agent knew at $7, the memories that had occurred by then and were not
# yet expired then, the latest first; keyset on (occurred, memory_id) ($8, $9). $3-$6: filters.
AS_OF_MEMORIES = """
SELECT memory_id, agent_id, session_id, type, title, content, tags, confidence, created_at, source, metadata,
       updated_at, occurred_at, valid_until, expired_at, expired_reason, idempotency_key
FROM memories
WHERE owner_id = $1 AND agent_id = $2
  AND ($3::text[] IS NULL OR type = ANY($3::text[]))
  AND ($4::text[] IS NULL OR tags @> $4::text[])
  AND ($5::timestamptz IS NULL OR created_at > $5::timestamptz)
  AND ($6::timestamptz IS NULL OR created_at < $6::timestamptz)
  AND coalesce(occurred_at, created_at) <= $7
  AND coalesce(least(expired_at, valid_until) > $7, true)
  AND ($8::timestamptz IS NULL OR (coalesce(occurred_at, created_at), memory_id) < ($8::timestamptz, $9::uuid))
ORDER BY coalesce(occurred_at, created_at) DESC, memory_id DESC
LIMIT $10
"""

# recall/changed-since: what changed in ($7, until], `until` being $8 or, on a first page, the
# database's now (returned with each row, so that every page answers the same question):
# memories written, patched, expired or restored (updated_at) or whose valid_until passed then.
# A memory's change time is the later of the two; keyset on (change time, memory_id) ($9, $10),
# the latest change first. $3-$6: the recall filters.
CHANGED_SINCE = """
WITH w AS (SELECT coalesce($8::timestamptz, now()) AS until)
SELECT * FROM (
    SELECT m.memory_id, m.agent_id, m.session_id, m.type, m.title, m.content, m.tags, m.confidence, m.created_at,
           m.source, m.metadata, m.updated_at, m.occurred_at, m.valid_until, m.expired_at, m.expired_reason,
           m.idempotency_key, w.until,
           greatest(CASE WHEN m.updated_at <= w.until THEN m.updated_at END,
                    CASE WHEN m.valid_until <= w.until THEN m.valid_until END) AS changed_at
    FROM memories m, w
    WHERE m.owner_id = $1 AND m.agent_id = $2
      AND ($3::text[] IS NULL OR m.type = ANY($3::text[]))
      AND ($4::text[] IS NULL OR m.tags @> $4::text[])
      AND ($5::timestamptz IS NULL OR m.created_at > $5::timestamptz)
      AND ($6::timestamptz IS NULL OR m.created_at < $6::timestamptz)
      AND ((m.updated_at > $7 AND m.updated_at <= w.until) OR (m.valid_until > $7 AND m.valid_until <= w.until))
) c
WHERE $9::timestamptz IS NULL OR (c.changed_at, c.memory_id) < ($9::timestamptz, $10::uuid)
ORDER BY c.changed_at DESC, c.memory_id DESC
LIMIT $11
"""

# Memories by id ($3 ids), for answers that carry more of each memory than a recall row holds.
GET_MEMORIES = """
SELECT memory_id, agent_id, session_id, type, title, content, tags, confidence, created_at, source, metadata,
       updated_at, occurred_at, valid_until, expired_at, expired_reason, idempotency_key
FROM memories
WHERE owner_id = $1 AND agent_id = $2 AND memory_id = ANY($3::uuid[])
"""


class LifecycleRow(msgspec.Struct, frozen=True, kw_only=True):
    memory: MemoryRow
    idempotency_key: str | None = None
    changed_at: datetime | None = None  # recall/changed-since: the change time, and
    until: datetime | None = None  # the end of the window it was found in


class Keyset(msgspec.Struct, frozen=True):
    """A timeline page's last row: its ordering time and memory id."""

    at: datetime
    memory_id: str


def _lifecycle_row(record: asyncpg.Record) -> LifecycleRow:
    memory = MemoryRow(
        memory_id=str(record["memory_id"]),
        agent_id=record["agent_id"],
        session_id=record["session_id"],
        type=record["type"],
        title=record["title"],
        content=record["content"],
        tags=list(record["tags"]),
        confidence=float(record["confidence"]),
        source=record["source"],
        metadata=record["metadata"],
        created_at=record["created_at"],
        updated_at=record["updated_at"],
        occurred_at=record["occurred_at"],
        valid_until=record["valid_until"],
        expired_at=record["expired_at"],
        expired_reason=record["expired_reason"],
    )
    return LifecycleRow(
        memory=memory,
        idempotency_key=record["idempotency_key"],
        changed_at=record.get("changed_at"),
        until=record.get("until"),
    )


def _filters(filters: MemoryFilters) -> tuple[Any, ...]:
    return (
        list(filters.types) if filters.types else None,
        list(filters.tags) if filters.tags else None,
        filters.created_after,
        filters.created_before,
    )


def _after(after: Keyset | None) -> tuple[datetime | None, UUID | None]:
    return (after.at, UUID(after.memory_id)) if after else (None, None)


class LifecycleRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def expire(self, owner_id: str, agent_id: str, memory_id: UUID, reason: str | None) -> LifecycleRow | None:
        record = await self._db.fetchrow(EXPIRE_MEMORY, UUID(owner_id), agent_id, memory_id, reason)
        return None if record is None else _lifecycle_row(record)

    async def restore(self, owner_id: str, agent_id: str, memory_id: UUID) -> LifecycleRow | None:
        record = await self._db.fetchrow(RESTORE_MEMORY, UUID(owner_id), agent_id, memory_id)
        return None if record is None else _lifecycle_row(record)

    async def recent(
        self, owner_id: str, agent_id: str, filters: MemoryFilters, after: Keyset | None, limit: int
    ) -> list[LifecycleRow]:
        rows = await self._db.fetch(
            RECENT_MEMORIES,
            UUID(owner_id),
            agent_id,
            *_filters(filters),
            filters.include_expired,
            *_after(after),
            limit,
        )
        return [_lifecycle_row(r) for r in rows]

    async def as_of(
        self, owner_id: str, agent_id: str, filters: MemoryFilters, moment: datetime, after: Keyset | None, limit: int
    ) -> list[LifecycleRow]:
        rows = await self._db.fetch(
            AS_OF_MEMORIES, UUID(owner_id), agent_id, *_filters(filters), moment, *_after(after), limit
        )
        return [_lifecycle_row(r) for r in rows]

    async def changed_since(
        self,
        owner_id: str,
        agent_id: str,
        filters: MemoryFilters,
        since: datetime,
        until: datetime | None,
        after: Keyset | None,
        limit: int,
    ) -> list[LifecycleRow]:
        rows = await self._db.fetch(
            CHANGED_SINCE, UUID(owner_id), agent_id, *_filters(filters), since, until, *_after(after), limit
        )
        return [_lifecycle_row(r) for r in rows]

    async def get_many(self, owner_id: str, agent_id: str, memory_ids: list[UUID]) -> list[LifecycleRow]:
        rows = await self._db.fetch(GET_MEMORIES, UUID(owner_id), agent_id, memory_ids)
        return [_lifecycle_row(r) for r in rows]
