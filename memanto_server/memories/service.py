"""Memory rules: remember, recall, answer and the memory records (api.md, Memories).

Every call runs within the token's live session. A write counts itself in the session
first (one Redis round trip that also proves the session live) and then commits (one
statement); if the write fails or turns out to be a replay, that count is taken back
(once, however often the take-back is delivered, and later if Redis does not answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

import asyncpg
import msgspec

from memanto_server.errors import FieldProblem, InvalidInput, NotFound, Unauthorized
from memanto_server.lib.pagination import decode_cursor, encode_cursor
from memanto_server.lib.text import reject_nul
from memanto_server.lib.timeutil import iso_z
from memanto_server.limits import MAX_METADATA_BYTES
from memanto_server.memories.records import record_of
from memanto_server.memories.repository import KeyReused, MemoryRepository, MemoryRow, Position
from memanto_server.memories.schemas import (
    AnswerRequest,
    AnswerResult,
    BatchStored,
    MemoryFilters,
    MemoryPage,
    MemoryPatch,
    MemoryRecord,
    RecalledMemory,
    RecallRequest,
    RecallResult,
    RememberRequest,
    StoredMemory,
)
from memanto_server.memories.search import (
    MODES,
    Resume,
    any_word_query,
    decode_recall_cursor,
    encode_recall_cursor,
    extract_answer,
    fuzzy_words,
    query_fingerprint,
)
from memanto_server.ops.metrics import MEMORIES_STORED, RECALL_RESULTS
from memanto_server.sessions.service import SessionService
from memanto_server.sessions.store import LiveState
from memanto_server.sessions.tokens import SessionClaims

T = TypeVar("T")


class ListCursor(msgspec.Struct, forbid_unknown_fields=True):
    c: datetime  # created_at of the last memory shown
    i: uuid.UUID  # its memory_id


NO_ANSWER = "No stored memory answers this question."


def _check_metadata(metadata: dict[str, Any] | None, field: str = "metadata") -> None:
    if metadata is None:
        return
    encoded = msgspec.json.encode(metadata)
    if len(encoded) > MAX_METADATA_BYTES:
        raise InvalidInput.field(field, f"must encode to at most {MAX_METADATA_BYTES} bytes of JSON")
    reject_nul(metadata, field)


def _check_memory(memory: RememberRequest | MemoryPatch, prefix: str = "") -> None:
    for name in ("content", "title", "source"):
        value = getattr(memory, name)
        reject_nul(value, prefix + name)
    tags = memory.tags if isinstance(memory.tags, list) else []
    for index, tag in enumerate(tags):
        reject_nul(tag, f"{prefix}tags[{index}]")
    if isinstance(memory, RememberRequest):
        reject_nul(memory.idempotency_key, prefix + "idempotency_key")
    if memory.metadata is not msgspec.UNSET:
        _check_metadata(memory.metadata, prefix + "metadata")


def request_fingerprint(memory: RememberRequest) -> str:
    """What an idempotency key is bound to: the memory the request asks to store, whether its
    fields came as query parameters or in a body, in any order (the key itself left out)."""
    canonical = msgspec.json.encode(msgspec.structs.replace(memory, idempotency_key=None), order="sorted")
    return hashlib.sha256(canonical).hexdigest()


def _key_reused(field: str, key: str, source: str) -> InvalidInput:
    # IETF draft-ietf-httpapi-idempotency-key-header: a key reused with a different request
    # payload is a 422 that says so.
    return InvalidInput(
        f"{field}: the idempotency key '{key}' was first used with a different request; "
        "send a new key for a new memory",
        code="idempotency_key_reused",
        errors=[FieldProblem(field=field, message="first used with a different request", source=source)],
    )


def memory_uuid(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise NotFound(f"memory '{text}' not found", code="memory_not_found") from None


def _recalled(row: MemoryRow) -> RecalledMemory:
    return RecalledMemory(
        memory_id=row.memory_id,
        content=row.content,
        type=row.type,
        title=row.title,
        tags=row.tags,
        confidence=round(row.confidence, 4),
        score=round(row.score, 6),
        created_at=iso_z(row.created_at),
        session_id=row.session_id,
    )


def _record(row: MemoryRow) -> MemoryRecord:
    return record_of(row)


class MemoryService:
    def __init__(self, repository: MemoryRepository, sessions: SessionService) -> None:
        self._repository = repository
        self._sessions = sessions

    async def _counted_write(
        self, claims: SessionClaims, count: int, write: Callable[[], Awaitable[T]]
    ) -> tuple[T, LiveState]:
        state = await self._sessions.touch(claims, stored=count)
        try:
            return await write(), state
        except BaseException as exc:
            with contextlib.suppress(Exception):  # kept and made later when Redis does not answer
                await asyncio.shield(self._sessions.take_back(claims, state, stored=count))
            if isinstance(exc, asyncpg.ForeignKeyViolationError):  # the agent was deleted meanwhile
                raise Unauthorized("the agent was deleted; its session has ended", code="session_ended") from None
            raise

    async def remember(
        self, claims: SessionClaims, request: RememberRequest, idempotency_key: str | None = None
    ) -> tuple[StoredMemory, int, bool]:
        _check_memory(request)
        key = idempotency_key or request.idempotency_key
        reject_nul(key, "Idempotency-Key")
        fingerprint = request_fingerprint(request) if key else None
        stored, state = await self._counted_write(
            claims,
            1,
            lambda: self._repository.insert(
                claims.owner_id, claims.agent_id, claims.session_id, request, key, fingerprint
            ),
        )
        if stored.replayed:  # the first request stored (and counted) it
            state = await self._sessions.take_back(claims, state, stored=1)
            if stored.fingerprint not in (None, fingerprint):
                raise _key_reused("Idempotency-Key", key or "", "header")
        else:
            MEMORIES_STORED.inc()
        memory = StoredMemory(
            memory_id=stored.memory_id,
            agent_id=claims.agent_id,
            session_id=stored.session_id,
            type=stored.type,
            created_at=iso_z(stored.created_at),
        )
        return memory, state.expires_ms, stored.replayed

    async def remember_batch(self, claims: SessionClaims, memories: list[RememberRequest]) -> tuple[BatchStored, int]:
        for index, memory in enumerate(memories):
            _check_memory(memory, f"memories[{index}].")
        ids = [uuid.uuid4() for _ in memories]
        fingerprints = [request_fingerprint(m) if m.idempotency_key else None for m in memories]
        try:
            memory_ids, state = await self._counted_write(
                claims,
                len(memories),
                lambda: self._repository.insert_batch(
                    claims.owner_id, claims.agent_id, claims.session_id, ids, memories, fingerprints
                ),
            )
        except KeyReused as reused:
            field = f"memories[{reused.index}].idempotency_key"
            raise _key_reused(field, memories[reused.index].idempotency_key or "", "body") from None
        stored = sum(1 for new, given in zip(ids, memory_ids, strict=True) if str(new) == given)
        MEMORIES_STORED.inc(stored)
        if stored < len(memories):  # repeats were counted by the request that first stored them
            state = await self._sessions.take_back(claims, state, stored=len(memories) - stored)
        return BatchStored(
            stored=stored, memory_ids=memory_ids, already_stored=len(memories) - stored
        ), state.expires_ms

    async def _search(
        self, claims: SessionClaims, request: RecallRequest, modes: tuple[str, ...], resume: Resume | None
    ) -> tuple[str, str, list[MemoryRow]]:
        """Try each way of matching in turn; return the first that finds anything."""
        rows: list[MemoryRow] = []
        mode, text = modes[0], request.query
        for mode in modes:
            if resume is not None:
                text = resume.text
            elif mode == "all":
                text = request.query
            elif mode == "any":
                text = any_word_query(request.query) or ""
            else:
                words = fuzzy_words(request.query)
                similar = await self._repository.similar_words(claims.owner_id, claims.agent_id, words) if words else []
                text = " or ".join(similar)
            if not text:
                continue
            rows = await self._repository.search(
                claims.owner_id,
                claims.agent_id,
                text,
                filters=request.filters(),
                min_score=request.min_score,
                after=resume.position if resume else None,
                limit=request.limit + 1,
            )
            if rows or resume is not None:
                break
        return mode, text, rows

    async def recall(self, claims: SessionClaims, request: RecallRequest) -> tuple[RecallResult, int]:
        reject_nul(request.query, "query")
        reject_nul(request.tags, "tags")
        fingerprint = query_fingerprint(request.query, request.filters(), request.min_score)
        resume = decode_recall_cursor(request.cursor, fingerprint)
        if resume is not None:
            reject_nul(resume.text, "cursor")
        mode, text, rows = await self._search(claims, request, (resume.mode,) if resume else MODES, resume)
        page = rows[: request.limit]
        # Liveness is checked after the search so that the check and the count are one
        # round trip; a dead session's results are thrown away unseen.
        state = await self._sessions.touch(claims, retrieved=len(page))
        RECALL_RESULTS.inc(len(page))
        next_cursor = encode_recall_cursor(mode, text, page[-1], fingerprint) if len(rows) > request.limit else None
        result = RecallResult(
            agent_id=claims.agent_id,
            session_id=claims.session_id,
            query=request.query,
            memories=[_recalled(r) for r in page],
            count=len(page),
            next_cursor=next_cursor,
            match=mode,
        )
        return result, state.expires_ms

    async def answer(self, claims: SessionClaims, request: AnswerRequest) -> tuple[AnswerResult, int]:
        reject_nul(request.question, "question")
        search = RecallRequest(query=request.question, limit=request.limit, include_expired=request.include_expired)
        _, _, rows = await self._search(claims, search, MODES, None)
        extracts = extract_answer(request.question, rows[: request.limit])
        by_id = {r.memory_id: r for r in rows}
        sources = [by_id[i] for i in dict.fromkeys(e.memory_id for e in extracts)]
        state = await self._sessions.touch(claims, retrieved=len(sources))
        RECALL_RESULTS.inc(len(sources))
        answer = " ".join(e.sentence for e in extracts) or NO_ANSWER
        result = AnswerResult(
            agent_id=claims.agent_id,
            session_id=claims.session_id,
            question=request.question,
            answer=answer,
            sources=[_recalled(r) for r in sources],
        )
        return result, state.expires_ms

    async def list(
        self, claims: SessionClaims, filters: MemoryFilters, limit: int, cursor: str | None
    ) -> tuple[MemoryPage, int]:
        reject_nul(filters.tags, "tags")
        position = decode_cursor(cursor, ListCursor)
        after = Position(position.c, str(position.i)) if position else None
        rows, state = await asyncio.gather(
            self._repository.list(claims.owner_id, claims.agent_id, filters, after, limit + 1),
            self._sessions.touch(claims),
        )
        page = rows[:limit]
        next_cursor = (
            encode_cursor(ListCursor(c=page[-1].created_at, i=uuid.UUID(page[-1].memory_id)))
            if len(rows) > limit
            else None
        )
        memories = [_record(r) for r in page]
        return MemoryPage(
            agent_id=claims.agent_id, memories=memories, count=len(memories), next_cursor=next_cursor
        ), state.expires_ms

    async def get(self, claims: SessionClaims, memory_id: str) -> tuple[MemoryRecord, int]:
        row, state = await asyncio.gather(
            self._repository.get(claims.owner_id, claims.agent_id, memory_uuid(memory_id)),
            self._sessions.touch(claims),
        )
        if row is None:
            raise NotFound(f"memory '{memory_id}' not found", code="memory_not_found")
        return _record(row), state.expires_ms

    async def patch(self, claims: SessionClaims, memory_id: str, patch: MemoryPatch) -> tuple[MemoryRecord, int]:
        if all(getattr(patch, f) is msgspec.UNSET for f in patch.__struct_fields__):
            raise InvalidInput("the patch changes nothing: give at least one field")
        _check_memory(patch)
        target = memory_uuid(memory_id)
        state = await self._sessions.touch(claims)
        row = await self._repository.patch(claims.owner_id, claims.agent_id, target, patch)
        if row is None:
            raise NotFound(f"memory '{memory_id}' not found", code="memory_not_found")
        return _record(row), state.expires_ms

    async def delete(self, claims: SessionClaims, memory_id: str) -> int:
        target = memory_uuid(memory_id)
        state = await self._sessions.touch(claims)
        if not await self._repository.delete(claims.owner_id, claims.agent_id, target):
            raise NotFound(f"memory '{memory_id}' not found", code="memory_not_found")
        return state.expires_ms
