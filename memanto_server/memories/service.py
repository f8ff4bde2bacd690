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
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import asyncpg
import msgspec

from memanto_server.errors import DependencyUnavailable, FieldProblem, InvalidInput, NotFound, Unauthorized
from memanto_server.lib.pagination import decode_cursor, encode_cursor
from memanto_server.lib.text import has_nul, reject_nul
from memanto_server.lib.timeutil import iso_z
from memanto_server.limits import MAX_METADATA_BYTES
from memanto_server.memories.answer import (
    Extract,
    Source,
    added_meaning,
    asked_for,
    choose_sentences,
    confidence,
    gives,
    held_words,
    judge,
    sentences_of,
    stems,
    unheld,
)
from memanto_server.memories.records import is_expired, record_of
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
from memanto_server.memories.search.cursor import decode_recall_cursor, encode_recall_cursor, query_fingerprint
from memanto_server.memories.search.grammar import Query, parse, with_corrections
from memanto_server.memories.search.ranking import (
    TYPO_WEIGHT,
    Candidate,
    Corpus,
    Ranked,
    TextScorer,
    TextShare,
    contenders,
    order_key,
    rank,
    rivals,
    supersede,
    superseding,
)
from memanto_server.memories.semantic import SemanticUnavailable
from memanto_server.memories.sizes import LargeAgents
from memanto_server.ops.metrics import MEMORIES_STORED, RECALL_RESULTS
from memanto_server.sessions.service import SessionService
from memanto_server.sessions.store import LiveState
from memanto_server.sessions.tokens import SessionClaims

T = TypeVar("T")
logger = logging.getLogger("memanto.memories")


class ListCursor(msgspec.Struct, forbid_unknown_fields=True):
    c: datetime  # created_at of the last memory shown
    i: uuid.UUID  # its memory_id


NO_ANSWER = "No stored memory answers this question."
# Candidates of each full-text term, and of the nearest-neighbour search: the depth to
# which recall ranks (its pages go through these).
TEXT_CANDIDATES_PER_TERM = 100
SEMANTIC_CANDIDATES = 100


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
    if has_nul(tags):  # then find the first tag that has one, to name it
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


def _recalled(row: MemoryRow, ranked: Ranked) -> RecalledMemory:
    return RecalledMemory(
        memory_id=row.memory_id,
        content=row.content,
        type=row.type,
        title=row.title,
        tags=row.tags,
        confidence=round(row.confidence, 4),
        score=round(ranked.score, 6),  # as min_score compares it
        created_at=iso_z(row.created_at),
        session_id=row.session_id,
        signals=list(ranked.signals),
        occurred_at=iso_z(row.occurred_at or row.created_at),
        status="expired" if is_expired(row) else "active",
    )


def _key(ranked: Ranked, candidate: Candidate) -> tuple[float, datetime, int, str]:
    """A memory's place in the ranked list (all parts descending): what a cursor holds."""
    return (ranked.score, *order_key(candidate))


class TextFound(msgspec.Struct, frozen=True):
    candidate: Candidate
    share: TextShare


class Ranking(msgspec.Struct, frozen=True):
    """A query's ranked memories, each one's place in time, and the rows already read."""

    ranked: list[Ranked]
    candidates: dict[str, Candidate]
    rows: dict[str, MemoryRow]
    mode: str  # the signals it ranked by: "text" when meaning was asked for but unavailable


def _held(query: Query, corpus: Corpus | None, group: int) -> bool:
    """Whether some memory holds the query word of `group`."""
    if corpus is None:
        return False
    return any(t.group == group and f > 0 for t, f in zip(query.terms, corpus.frequencies, strict=True))


async def _done(value: T) -> T:
    return value


class Semantic(Protocol):
    """Recall by meaning: the embedder and the nearest-neighbour search of the embeddings."""

    async def nearest(
        self, owner_id: str, agent_id: str, query: str, filters: MemoryFilters, limit: int, *, known_large: bool
    ) -> list[tuple[MemoryRow, float]]:
        """The `limit` memories nearest in meaning to `query`, each with its cosine similarity
        (`known_large`: the agent is known to be large, memories/sizes.py)."""

    async def similarities(self, query: str, texts: list[str]) -> list[float]:
        """Cosine similarity of each of `texts` to `query`."""

    async def pair_similarities(self, pairs: list[tuple[str, str]]) -> list[float]:
        """Cosine similarity of each (query, text) pair."""

    async def alike(self, owner_id: str, agent_id: str, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], float]:
        """Cosine similarity of the two memories of each pair (none for one not embedded yet)."""


def _record(row: MemoryRow) -> MemoryRecord:
    return record_of(row)


class MemoryService:
    def __init__(
        self, repository: MemoryRepository, sessions: SessionService, semantic: Semantic | None = None
    ) -> None:
        self._repository = repository
        self._sessions = sessions
        self._semantic = semantic
        self._large = LargeAgents()

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

    async def _text(
        self, claims: SessionClaims, query: Query, filters: MemoryFilters, large: bool
    ) -> dict[str, TextFound]:
        """Full-text candidates and what each holds of the query. A query word that no memory
        holds is looked up among the agent's own words for close spellings, and the query is
        searched again with them (whatever other words matched)."""
        owner_id, agent_id = claims.owner_id, claims.agent_id
        search = self._repository.search_text
        hits, corpus = await search(owner_id, agent_id, query, filters, TEXT_CANDIDATES_PER_TERM, known_large=large)
        unknown = [word for group, word in query.typo_words if not _held(query, corpus, group)]
        if unknown:
            corrections = await self._repository.similar_words(owner_id, agent_id, unknown)
            if corrections:
                query = with_corrections(query, corrections, TYPO_WEIGHT)
                hits, corpus = await search(
                    owner_id, agent_id, query, filters, TEXT_CANDIDATES_PER_TERM, known_large=large
                )
        if corpus is None:
            return {}
        if not large:  # a count taken now; an assumed one says nothing (memories/sizes.py)
            self._large.saw(owner_id, agent_id, corpus.population)
        scorer = TextScorer(query.terms, corpus)
        return {
            h.memory_id: TextFound(Candidate(h.memory_id, h.created_at, h.seq), scorer.share(h.strengths)) for h in hits
        }

    async def _nearest(
        self, claims: SessionClaims, query: str, mode: str, filters: MemoryFilters, large: bool
    ) -> list[tuple[MemoryRow, float]] | None:
        """The nearest memories in meaning; None when the embedder cannot embed the query now
        (hybrid recall goes on with its text signals; semantic recall is unavailable)."""
        assert self._semantic is not None
        owner_id, agent_id = claims.owner_id, claims.agent_id
        try:
            return await self._semantic.nearest(
                owner_id, agent_id, query, filters, SEMANTIC_CANDIDATES, known_large=large
            )
        except SemanticUnavailable as exc:
            if mode == "semantic":
                raise DependencyUnavailable("the embedding model does not answer; try again shortly") from None
            logger.warning("recall by meaning unavailable, ranking by text only: %s", exc)
            return None

    async def _rank(self, claims: SessionClaims, query_text: str, mode: str, filters: MemoryFilters) -> Ranking:
        """Every memory with evidence for the query, best first, by the signals of `mode`."""
        query = parse(query_text)
        use_text = mode != "semantic" and bool(query.terms)
        use_semantic = mode != "text" and self._semantic is not None
        # An agent known to be large is not counted again by either search (memories/sizes.py).
        large = self._large.known(claims.owner_id, claims.agent_id)
        text, nearest = await asyncio.gather(
            self._text(claims, query, filters, large) if use_text else _done({}),
            self._nearest(claims, query_text, mode, filters, large) if use_semantic else _done([]),
        )
        if nearest is None:
            use_semantic, nearest = False, []
        candidates = {memory_id: found.candidate for memory_id, found in text.items()}
        rows: dict[str, MemoryRow] = {}
        similarity: dict[str, float] = {}
        excluded = stems(" ".join(query.excluded))
        for row, cosine in nearest:
            # Stemming a memory's text is pure Python: only when the query leaves words out.
            if excluded and excluded & stems(f"{row.title or ''} {row.content}"):
                continue  # the query leaves out memories holding this word
            rows[row.memory_id] = row
            similarity[row.memory_id] = cosine
            candidates.setdefault(row.memory_id, Candidate(row.memory_id, row.created_at, row.seq))
        shares = {memory_id: found.share for memory_id, found in text.items()}
        ranked = rank(candidates.values(), shares, similarity)
        order = {memory_id: order_key(c) for memory_id, c in candidates.items()}
        # Pairs that hold the query through the same words; with embeddings, those alike in
        # meaning too, the earlier being the candidate the later resembles most.
        pairs = superseding(contenders(ranked, order), shares, None)
        if pairs and use_semantic:
            assert self._semantic is not None
            alike = await self._semantic.alike(claims.owner_id, claims.agent_id, rivals(pairs, ranked, order))
            pairs = superseding(pairs, shares, alike)
        if pairs:
            ranked = supersede(ranked, pairs, order)
        return Ranking(ranked, candidates, rows, "text" if mode == "hybrid" and not use_semantic else mode)

    async def _rows(self, claims: SessionClaims, ranking: Ranking, ranked: list[Ranked]) -> dict[str, MemoryRow]:
        """The memories of `ranked`, read once (those nearest-neighbour search returned are known)."""
        missing = [r.memory_id for r in ranked if r.memory_id not in ranking.rows]
        found = await self._repository.get_many(claims.owner_id, claims.agent_id, missing) if missing else {}
        return {**{r.memory_id: ranking.rows[r.memory_id] for r in ranked if r.memory_id in ranking.rows}, **found}

    def _mode(self, requested: str) -> str:
        if self._semantic is not None:
            return requested
        if requested == "semantic":
            raise InvalidInput.field("mode", "semantic recall is off on this server (no embedder)", "body")
        return "text"

    async def recall(self, claims: SessionClaims, request: RecallRequest) -> tuple[RecallResult, int]:
        reject_nul(request.query, "query")
        reject_nul(request.tags, "tags")
        mode = self._mode(request.mode)
        filters = request.filters()
        fingerprint = query_fingerprint(request.query, request.mode, filters, request.min_score)
        resume = decode_recall_cursor(request.cursor, fingerprint)
        as_of = resume.as_of if resume else datetime.now(UTC)
        # The memories that existed at the first page: the cursor's pages rank the same set.
        before = as_of if filters.created_before is None else min(as_of, filters.created_before)
        ranking = await self._rank(claims, request.query, mode, msgspec.structs.replace(filters, created_before=before))
        keyed = [(r, _key(r, ranking.candidates[r.memory_id])) for r in ranking.ranked]
        if request.min_score is not None:
            keyed = [(r, k) for r, k in keyed if r.score >= request.min_score]
        if resume is not None:
            keyed = [(r, k) for r, k in keyed if k < resume.key]
        page = keyed[: request.limit]
        rows = await self._rows(claims, ranking, [r for r, _ in page])
        page = [(r, k) for r, k in page if r.memory_id in rows]  # deleted meanwhile
        # Liveness is checked after the search so that the check and the count are one
        # round trip; a dead session's results are thrown away unseen.
        state = await self._sessions.touch(claims, retrieved=len(page))
        RECALL_RESULTS.inc(len(page))
        more = len(keyed) > request.limit
        result = RecallResult(
            agent_id=claims.agent_id,
            session_id=claims.session_id,
            query=request.query,
            memories=[_recalled(rows[r.memory_id], r) for r, _ in page],
            count=len(page),
            next_cursor=encode_recall_cursor(page[-1][1], as_of, fingerprint) if more and page else None,
            mode=ranking.mode if mode == "hybrid" else mode,
        )
        return result, state.expires_ms

    async def answer(self, claims: SessionClaims, request: AnswerRequest) -> tuple[AnswerResult, int]:
        reject_nul(request.question, "question")
        filters = MemoryFilters(include_expired=request.include_expired)
        ranking = await self._rank(claims, request.question, self._mode("hybrid"), filters)
        rows = await self._rows(claims, ranking, ranking.ranked[: request.limit])
        top = [r for r in ranking.ranked[: request.limit] if r.memory_id in rows]
        sources = [Source(r.memory_id, rows[r.memory_id].title, rows[r.memory_id].content, r.relevance) for r in top]
        sentences = await asyncio.to_thread(sentences_of, sources)
        similarities = None
        if self._semantic is not None and sentences and ranking.mode == "hybrid":
            with contextlib.suppress(SemanticUnavailable):
                similarities = await self._semantic.similarities(request.question, [s.text for s in sentences])
        chosen = await asyncio.to_thread(choose_sentences, request.question, sources, sentences, similarities)
        whole = dict(zip((s.text for s in sentences), similarities, strict=True)) if similarities else None
        said = judge(chosen, await self._confidences(request.question, chosen, whole))
        used = list(dict.fromkeys(e.memory_id for e in said.extracts))
        by_id = {r.memory_id: r for r in top}
        state = await self._sessions.touch(claims, retrieved=len(used))
        RECALL_RESULTS.inc(len(used))
        result = AnswerResult(
            agent_id=claims.agent_id,
            session_id=claims.session_id,
            question=request.question,
            answer=" ".join(e.sentence for e in said.extracts) or NO_ANSWER,
            sources=[_recalled(rows[i], by_id[i]) for i in used],
            confidence=said.confidence,
        )
        return result, state.expires_ms

    async def _confidences(self, question: str, chosen: list[Extract], whole: dict[str, float] | None) -> list[float]:
        """How surely each chosen sentence answers `question` (answer.py): by meaning too when
        the sentences were compared with the question in meaning (`whole`: each sentence's
        cosine similarity to the question)."""
        leftovers = [unheld(question, e.sentence) for e in chosen]
        holds = [held_words(question, e.sentence) for e in chosen]
        kind = asked_for(question)
        # Both kinds of part, measured in one call: what each sentence leaves out, and what it holds.
        pairs = [(part, e.sentence) for parts in (leftovers, holds) for part, e in zip(parts, chosen, strict=True)]
        asked = [(part, sentence) for part, sentence in pairs if part is not None]
        measured: list[float] = []
        if whole is not None and asked and self._semantic is not None:
            with contextlib.suppress(SemanticUnavailable):
                measured = await self._semantic.pair_similarities(asked)
        found = iter(measured)
        known = [next(found) if measured and part is not None else None for part, _ in pairs]
        unheld_similarity, held_similarity = known[: len(chosen)], known[len(chosen) :]
        return [
            confidence(
                e.lexical,
                unheld_similarity[i],
                leftovers[i] is None,
                gives(kind, e.sentence),
                added_meaning(whole.get(e.sentence) if whole else None, held_similarity[i]),
            )
            for i, e in enumerate(chosen)
        ]

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
