"""Memory rules: remember and recall within a live session (api.md, Memories)."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import msgspec

from app.errors import InvalidInput, Unauthorized
from app.memories.repository import MemoryRepository
from app.memories.schemas import (
    MAX_METADATA_BYTES,
    RecalledMemory,
    RecallRequest,
    RecallResult,
    RememberRequest,
    StoredMemory,
)
from app.sessions.service import SessionService
from app.sessions.store import LiveState
from app.sessions.tokens import SessionClaims
from app.timeutil import iso_z


class MemoryService:
    def __init__(self, repository: MemoryRepository, sessions: SessionService) -> None:
        self._repository = repository
        self._sessions = sessions

    async def remember(self, claims: SessionClaims, request: RememberRequest) -> tuple[StoredMemory, LiveState]:
        if request.metadata is not None and len(msgspec.json.encode(request.metadata)) > MAX_METADATA_BYTES:
            raise InvalidInput.field("metadata", f"must encode to at most {MAX_METADATA_BYTES} bytes of JSON")
        # Count first (one Redis round trip that also proves the session live), then
        # write (one statement); if the write fails the count is taken back.
        state = await self._sessions.touch(claims, stored=1)
        try:
            memory_id, created_at = await self._repository.insert(
                claims.owner_id, claims.agent_id, claims.session_id,
                type=request.type, title=request.title, content=request.content, tags=request.tags,
                confidence=request.confidence, source=request.source, metadata=request.metadata,
            )
        except BaseException as exc:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._sessions.touch(claims, stored=-1))
            if isinstance(exc, asyncpg.ForeignKeyViolationError):  # the agent was deleted meanwhile
                raise Unauthorized("the agent was deleted; its session has ended", code="session_ended") from None
            raise
        stored = StoredMemory(
            memory_id=memory_id, agent_id=claims.agent_id, session_id=claims.session_id,
            type=request.type, created_at=iso_z(created_at),
        )
        return stored, state

    async def recall(self, claims: SessionClaims, request: RecallRequest) -> tuple[RecallResult, LiveState]:
        types = [request.type] if isinstance(request.type, str) else request.type or None
        rows = await self._repository.search(claims.owner_id, claims.agent_id, request.query, types, request.limit)
        # Liveness is checked after the search so that the check and the count are one
        # round trip; a dead session's results are thrown away unseen.
        state = await self._sessions.touch(claims, retrieved=len(rows))
        memories = [
            RecalledMemory(
                memory_id=r.memory_id, content=r.content, type=r.type, title=r.title, tags=r.tags,
                confidence=round(r.confidence, 4), score=round(r.score, 6), created_at=iso_z(r.created_at),
                session_id=r.session_id,
            )
            for r in rows
        ]
        return (
            RecallResult(
                agent_id=claims.agent_id, session_id=claims.session_id, query=request.query,
                memories=memories, count=len(memories),
            ),
            state,
        )
