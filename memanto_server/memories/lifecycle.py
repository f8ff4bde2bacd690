"""Memory lifecycle rules: expire and restore, and the recalls in time (api.md, Memory lifecycle).

Like every memory call they run within the token's live session: each proves the session
live in one Redis round trip, and the recalls count what they return in `memories_retrieved`.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime

import msgspec

from memanto_server.errors import InvalidInput, NotFound
from memanto_server.lib.pagination import decode_cursor, encode_cursor
from memanto_server.lib.text import reject_nul
from memanto_server.lib.timeutil import iso_z
from memanto_server.memories.lifecycle_repository import Keyset, LifecycleRepository, LifecycleRow
from memanto_server.memories.records import record_of
from memanto_server.memories.schemas import (
    AsOfRequest,
    ChangedSinceRequest,
    MemoryFilters,
    MemoryRecord,
    RecentRequest,
    TimelineMemory,
    TimelineResult,
)
from memanto_server.memories.service import memory_uuid
from memanto_server.ops.metrics import RECALL_RESULTS
from memanto_server.sessions.service import SessionService
from memanto_server.sessions.tokens import SessionClaims


class TimelineCursor(msgspec.Struct, forbid_unknown_fields=True):
    t: datetime  # the ordering time of the last memory shown
    i: uuid.UUID  # its memory_id
    f: str  # fingerprint of the recall and its filters
    u: datetime | None = None  # changed-since: the end of the window of the first page


def _fingerprint(kind: str, filters: MemoryFilters, moment: datetime | None) -> str:
    return hashlib.sha256(msgspec.json.encode([kind, filters, moment])).hexdigest()[:16]


def _resume(cursor: str | None, fingerprint: str) -> TimelineCursor | None:
    position = decode_cursor(cursor, TimelineCursor)
    if position is not None and position.f != fingerprint:
        raise InvalidInput.field("cursor", "belongs to another recall or other filters", "body")
    return position


def _change_type(row: LifecycleRow, since: datetime) -> str:
    memory = row.memory
    if memory.created_at > since:
        return "created"
    ends = [m for m in (memory.expired_at, memory.valid_until) if m is not None and row.until and m <= row.until]
    if ends and min(ends) > since:
        return "expired"
    return "updated"


def _timeline_memory(row: LifecycleRow, change_type: str | None = None) -> TimelineMemory:
    record = record_of(row.memory)
    return TimelineMemory(**msgspec.structs.asdict(record), change_type=change_type)


class LifecycleService:
    def __init__(self, repository: LifecycleRepository, sessions: SessionService) -> None:
        self._repository = repository
        self._sessions = sessions

    async def expire(self, claims: SessionClaims, memory_id: str, reason: str | None) -> tuple[MemoryRecord, int]:
        """Expire the memory now (kept; left out of recall and answer). Expiring it again changes nothing."""
        reject_nul(reason, "reason")
        target = memory_uuid(memory_id)
        state = await self._sessions.touch(claims)
        row = await self._repository.expire(claims.owner_id, claims.agent_id, target, reason)
        if row is None:
            raise NotFound(f"memory '{memory_id}' not found", code="memory_not_found")
        return record_of(row.memory), state.expires_ms

    async def restore(self, claims: SessionClaims, memory_id: str) -> tuple[MemoryRecord, int]:
        """Make an expired memory hold again, with no end."""
        target = memory_uuid(memory_id)
        state = await self._sessions.touch(claims)
        row = await self._repository.restore(claims.owner_id, claims.agent_id, target)
        if row is None:
            raise NotFound(f"memory '{memory_id}' not found", code="memory_not_found")
        return record_of(row.memory), state.expires_ms

    async def recent(self, claims: SessionClaims, request: RecentRequest) -> tuple[TimelineResult, int]:
        rows, next_cursor, _ = await self.recent_rows(claims, request, count=False)
        return await self._answer(claims, "recent", [_timeline_memory(r) for r in rows], next_cursor)

    async def recent_rows(
        self, claims: SessionClaims, request: RecentRequest, *, count: bool = True
    ) -> tuple[list[LifecycleRow], str | None, int]:
        """recall/recent's page as rows, its next cursor and (`count`: counted as retrieved) the expiry."""
        filters = request.filters(request.include_expired)
        fingerprint = _fingerprint("recent", filters, None)
        position = _resume(request.cursor, fingerprint)
        after = Keyset(position.t, str(position.i)) if position else None
        rows = await self._repository.recent(claims.owner_id, claims.agent_id, filters, after, request.limit + 1)
        page = rows[: request.limit]
        last = page[-1].memory if page else None
        next_cursor = (
            encode_cursor(TimelineCursor(t=last.created_at, i=uuid.UUID(last.memory_id), f=fingerprint))
            if last is not None and len(rows) > request.limit
            else None
        )
        expires = 0
        if count:
            expires = (await self._sessions.touch(claims, retrieved=len(page))).expires_ms
            RECALL_RESULTS.inc(len(page))
        return page, next_cursor, expires

    async def as_of(self, claims: SessionClaims, request: AsOfRequest) -> tuple[TimelineResult, int]:
        filters = request.filters()
        fingerprint = _fingerprint("as_of", filters, request.as_of)
        position = _resume(request.cursor, fingerprint)
        after = Keyset(position.t, str(position.i)) if position else None
        rows = await self._repository.as_of(
            claims.owner_id, claims.agent_id, filters, request.as_of, after, request.limit + 1
        )
        page = rows[: request.limit]
        last = page[-1].memory if page else None
        next_cursor = (
            encode_cursor(
                TimelineCursor(t=last.occurred_at or last.created_at, i=uuid.UUID(last.memory_id), f=fingerprint)
            )
            if last is not None and len(rows) > request.limit
            else None
        )
        memories = [_timeline_memory(r) for r in page]
        return await self._answer(claims, "as_of", memories, next_cursor, as_of=iso_z(request.as_of))

    async def changed_since(self, claims: SessionClaims, request: ChangedSinceRequest) -> tuple[TimelineResult, int]:
        filters = request.filters(include_expired=True)
        fingerprint = _fingerprint("changed_since", filters, request.since)
        position = _resume(request.cursor, fingerprint)
        after = Keyset(position.t, str(position.i)) if position else None
        rows = await self._repository.changed_since(
            claims.owner_id,
            claims.agent_id,
            filters,
            request.since,
            position.u if position else None,
            after,
            request.limit + 1,
        )
        page = rows[: request.limit]
        last = page[-1] if page else None
        next_cursor = (
            encode_cursor(
                TimelineCursor(t=last.changed_at, i=uuid.UUID(last.memory.memory_id), f=fingerprint, u=last.until)
            )
            if last is not None and last.changed_at is not None and len(rows) > request.limit
            else None
        )
        memories = [_timeline_memory(r, _change_type(r, request.since)) for r in page]
        return await self._answer(claims, "changed_since", memories, next_cursor, since=iso_z(request.since))

    async def rows(self, claims: SessionClaims, memory_ids: list[str]) -> list[LifecycleRow]:
        """The agent's memories of these ids, in full (for answers that need more than a recall row)."""
        ids = []
        for memory_id in memory_ids:
            try:
                ids.append(uuid.UUID(memory_id))
            except ValueError:
                continue
        return await self._repository.get_many(claims.owner_id, claims.agent_id, ids) if ids else []

    async def _answer(
        self,
        claims: SessionClaims,
        mode: str,
        memories: list[TimelineMemory],
        next_cursor: str | None,
        *,
        as_of: str | None = None,
        since: str | None = None,
    ) -> tuple[TimelineResult, int]:
        # Counted as recall counts: what is returned to the agent is retrieved.
        state = await self._sessions.touch(claims, retrieved=len(memories))
        RECALL_RESULTS.inc(len(memories))
        result = TimelineResult(
            agent_id=claims.agent_id,
            session_id=claims.session_id,
            memories=memories,
            count=len(memories),
            next_cursor=next_cursor,
            temporal_mode=mode,
            as_of=as_of,
            since=since,
        )
        return result, state.expires_ms
