"""Memories in Postgres, always scoped to owner and agent."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import msgspec

from memanto_server.errors import POSTGRES_OUTAGE
from memanto_server.lib.coalesce import Coalescer, outcome_of
from memanto_server.lib.db import Database
from memanto_server.memories.schemas import MemoryFilters, MemoryPatch, RememberRequest

logger = logging.getLogger("memanto.memories")

# The `remember` calls of concurrent requests are stored as a group commit (memanto_server/lib/coalesce.py):
# one INSERT_GROUP at a time per worker, of at most REMEMBER_GROUP rows, so that a burst is
# stored, and answered, in waves (bench/README.md, "Group commit").
REMEMBER_GROUP = 16


class MemoryRow(msgspec.Struct, frozen=True, kw_only=True):
    memory_id: str
    agent_id: str
    session_id: str
    type: str
    title: str | None
    content: str
    tags: list[str]
    confidence: float
    source: str | None = None
    metadata: dict[str, Any] | None = None
    created_at: datetime
    updated_at: datetime | None = None
    score: float = 0.0
    occurred_at: datetime | None = None
    valid_until: datetime | None = None
    expired_at: datetime | None = None
    expired_reason: str | None = None


class Stored(msgspec.Struct, frozen=True):
    memory_id: str
    session_id: str
    type: str
    created_at: datetime
    replayed: bool
    # On a replay, the fingerprint of the request that stored the memory (None before migration 0013).
    fingerprint: str | None = None


class KeyReused(Exception):
    """An item of a batch carries an idempotency key first used with another request."""

    def __init__(self, index: int) -> None:
        super().__init__(f"memories[{index}].idempotency_key")
        self.index = index


class Position(msgspec.Struct, frozen=True):
    """A keyset position: the last row of the previous page."""

    created_at: datetime
    memory_id: str
    score: float | None = None


# With an Idempotency-Key, the partial unique index is the guard: of concurrent retries
# one inserts, the others wait for it to commit and then insert nothing.
INSERT_MEMORY = """
INSERT INTO memories (owner_id, agent_id, session_id, type, title, content, tags, confidence, source, metadata,
                      idempotency_key, idempotency_fingerprint, occurred_at, valid_until)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, coalesce($13, now()), $14)
ON CONFLICT (owner_id, agent_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING memory_id, created_at
"""

# A separate statement on purpose: its snapshot is taken after the conflicting insert committed.
FIND_BY_IDEMPOTENCY_KEY = """
SELECT memory_id, session_id, type, created_at, idempotency_fingerprint FROM memories
WHERE owner_id = $1 AND agent_id = $2 AND idempotency_key = $3
"""

# Many memories in one statement, one commit, all or none: a batch-remember, or the
# `remember` calls of concurrent requests (one event-loop turn; memanto_server/lib/coalesce.py), rows of
# any owners, agents and sessions. As in INSERT_MEMORY, the partial unique index is the
# guard for idempotency keys, between these rows as well (of two with one key, the second
# inserts nothing), so a retried or resumed batch stores nothing twice; RETURNING names
# what was inserted.
INSERT_GROUP = """
INSERT INTO memories (memory_id, owner_id, agent_id, session_id, type, title, content, tags, confidence, source,
                      metadata, idempotency_key, idempotency_fingerprint, occurred_at, valid_until)
SELECT g.memory_id, g.owner_id, g.agent_id, g.session_id, g.type, g.title, g.content,
       ARRAY(SELECT jsonb_array_elements_text(g.tags::jsonb)), g.confidence, g.source, g.metadata::jsonb,
       g.idempotency_key, g.idempotency_fingerprint, coalesce(g.occurred_at, now()), g.valid_until
FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
            $9::real[], $10::text[], $11::text[], $12::text[], $13::text[], $14::timestamptz[], $15::timestamptz[])
     AS g(memory_id, owner_id, agent_id, session_id, type, title, content, tags, confidence, source, metadata,
          idempotency_key, idempotency_fingerprint, occurred_at, valid_until)
ON CONFLICT (owner_id, agent_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING memory_id, created_at
"""

# The memories that earlier requests stored under some of a batch's keys, with the fingerprint
# of each one's request.
FIND_BY_IDEMPOTENCY_KEYS = """
SELECT idempotency_key, memory_id, idempotency_fingerprint FROM memories
WHERE owner_id = $1 AND agent_id = $2 AND idempotency_key = ANY($3::text[])
"""

# Full-text search. websearch_to_tsquery accepts what people type and never fails to parse;
# the generated `search` column weighs the title (A) above the content (B); normalisation
# 32 maps the rank into [0, 1). Filters are optional ($4-$7 NULL = no filter); pages are
# keyset on (score, created_at, memory_id), so no row is skipped or repeated between pages.
# Expired memories (migration 0010) only when $13 (include_expired) is true.
SEARCH_TEXT = """
SELECT * FROM (
    SELECT m.memory_id, m.agent_id, m.session_id, m.type, m.title, m.content, m.tags, m.confidence, m.created_at,
           ts_rank_cd(m.search, q.query, 32)::float8 AS score
    FROM memories m, websearch_to_tsquery('english', $3) AS q(query)
    WHERE m.owner_id = $1 AND m.agent_id = $2 AND m.search @@ q.query
      AND ($4::text[] IS NULL OR m.type = ANY($4::text[]))
      AND ($5::text[] IS NULL OR m.tags @> $5::text[])
      AND ($6::timestamptz IS NULL OR m.created_at > $6::timestamptz)
      AND ($7::timestamptz IS NULL OR m.created_at < $7::timestamptz)
      AND ($13::boolean OR coalesce(least(m.expired_at, m.valid_until) > now(), true))
) r
WHERE ($8::float8 IS NULL OR r.score >= $8::float8)
  AND ($9::float8 IS NULL OR (r.score, r.created_at, r.memory_id) < ($9::float8, $10::timestamptz, $11::uuid))
ORDER BY r.score DESC, r.created_at DESC, r.memory_id DESC
LIMIT $12
"""

# SEARCH_TEXT's page without ranking every match, for a query that is a disjunction of
# plain words (migration 0004 explains the ranks this relies on), in two tiers:
#   `high`: the matches that rank above the lowest rank a match can have (`low_score`,
#           that of one content occurrence: 'x:1B' for 'x'); all of them are among the
#           matches where a query word is strong or two query words occur ($13 is
#           `a b or a c or b c`, NULL for one word), which indexes find. Ranked as in
#           SEARCH_TEXT.
#   `low`:  read only when `high` does not fill the page: the newest matches. Those not in
#           `high` all have the lowest rank, so newest first is their order, and a walk
#           over the agent's memories newest first finds them for a frequent word without
#           reading every match (the planner's choice; a bitmap scan for a rare word).
# Both tiers apply SEARCH_TEXT's filters and keyset position unchanged ($14: include_expired).
# For any other kind of query `high` holds exactly what SEARCH_TEXT returns, and `low` is empty.
SEARCH_RANKED_TIERS = """
WITH high AS MATERIALIZED (
    SELECT r.* FROM (
        SELECT m.memory_id, m.agent_id, m.session_id, m.type, m.title, m.content, m.tags, m.confidence, m.created_at,
               ts_rank_cd(m.search, websearch_to_tsquery('english', $3), 32)::float8 AS score
        FROM memories m
        WHERE m.owner_id = $1 AND m.agent_id = $2
          AND CASE WHEN NOT tsquery_is_disjunction(websearch_to_tsquery('english', $3))
                   THEN m.search @@ websearch_to_tsquery('english', $3)
                   WHEN $13::text IS NULL
                   THEN tsvector_strong_lexemes(m.search) @@ websearch_to_tsquery('english', $3)
                        AND ts_rank_cd(m.search, websearch_to_tsquery('english', $3), 32)
                            > ts_rank_cd('x:1B'::tsvector, 'x'::tsquery, 32)
                   ELSE (tsvector_strong_lexemes(m.search) @@ websearch_to_tsquery('english', $3)
                         OR m.search @@ websearch_to_tsquery('english', $13::text))
                        AND ts_rank_cd(m.search, websearch_to_tsquery('english', $3), 32)
                            > ts_rank_cd('x:1B'::tsvector, 'x'::tsquery, 32)
              END
          AND ($4::text[] IS NULL OR m.type = ANY($4::text[]))
          AND ($5::text[] IS NULL OR m.tags @> $5::text[])
          AND ($6::timestamptz IS NULL OR m.created_at > $6::timestamptz)
          AND ($7::timestamptz IS NULL OR m.created_at < $7::timestamptz)
          AND ($14::boolean OR coalesce(least(m.expired_at, m.valid_until) > now(), true))
    ) r
    WHERE ($8::float8 IS NULL OR r.score >= $8::float8)
      AND ($9::float8 IS NULL OR (r.score, r.created_at, r.memory_id) < ($9::float8, $10::timestamptz, $11::uuid))
    ORDER BY r.score DESC, r.created_at DESC, r.memory_id DESC
    LIMIT $12
)
SELECT 'high' AS tier, NULL::float8 AS low_score, high.* FROM high
UNION ALL
SELECT 'low', ts_rank_cd('x:1B'::tsvector, 'x'::tsquery, 32)::float8,
       r.memory_id, r.agent_id, r.session_id, r.type, r.title, r.content, r.tags, r.confidence, r.created_at,
       ts_rank_cd(r.search, websearch_to_tsquery('english', $3), 32)::float8  -- of a page's rows only
FROM (
    SELECT m.memory_id, m.agent_id, m.session_id, m.type, m.title, m.content, m.tags, m.confidence, m.created_at,
           m.search
    FROM memories m
    WHERE m.owner_id = $1 AND m.agent_id = $2
      AND tsquery_is_disjunction(websearch_to_tsquery('english', $3))
      AND ($8::float8 IS NULL OR ts_rank_cd('x:1B'::tsvector, 'x'::tsquery, 32) >= $8::float8)
      AND m.search @@ websearch_to_tsquery('english', $3)
      AND ($4::text[] IS NULL OR m.type = ANY($4::text[]))
      AND ($5::text[] IS NULL OR m.tags @> $5::text[])
      AND ($6::timestamptz IS NULL OR m.created_at > $6::timestamptz)
      AND ($7::timestamptz IS NULL OR m.created_at < $7::timestamptz)
      AND ($14::boolean OR coalesce(least(m.expired_at, m.valid_until) > now(), true))
      AND ($9::float8 IS NULL OR (ts_rank_cd(m.search, websearch_to_tsquery('english', $3), 32)::float8,
                                  m.created_at, m.memory_id) < ($9::float8, $10::timestamptz, $11::uuid))
      AND (SELECT count(*) FROM high) < $12
    -- Rows of `high` may come again here: enough rows to make up for them.
    ORDER BY m.created_at DESC, m.memory_id DESC
    LIMIT $12 + (SELECT count(*) FROM high)
) r
"""

# The fallback for misspelled or partial words: for each query word, the agent's own
# words that the trigram index finds alike (`<%`, pg_trgm.word_similarity_threshold)
# and that are also close in edits (one for short words, two for longer ones) or that
# complete it (a partial word). The caller searches those words with SEARCH_TEXT.
SUGGEST_WORDS = """
SELECT s.word
FROM unnest($3::text[]) AS q(word)
CROSS JOIN LATERAL (
    SELECT l.word FROM memory_lexicon l
    WHERE l.owner_id = $1 AND l.agent_id = $2 AND q.word <% l.word
      AND (levenshtein_less_equal(q.word, l.word, 2) <= CASE WHEN length(q.word) <= 4 THEN 1 ELSE 2 END
           OR (length(q.word) >= 4 AND starts_with(l.word, q.word)))
    ORDER BY levenshtein_less_equal(q.word, l.word, 3), word_similarity(q.word, l.word) DESC, l.word
    LIMIT 3
) s
"""

LIST_MEMORIES = """
SELECT memory_id, agent_id, session_id, type, title, content, tags, confidence, created_at,
       source, metadata, updated_at, occurred_at, valid_until, expired_at, expired_reason
FROM memories
WHERE owner_id = $1 AND agent_id = $2
  AND ($3::text[] IS NULL OR type = ANY($3::text[]))
  AND ($4::text[] IS NULL OR tags @> $4::text[])
  AND ($5::timestamptz IS NULL OR created_at > $5::timestamptz)
  AND ($6::timestamptz IS NULL OR created_at < $6::timestamptz)
  AND ($7::timestamptz IS NULL OR (created_at, memory_id) < ($7::timestamptz, $8::uuid))
ORDER BY created_at DESC, memory_id DESC
LIMIT $9
"""

GET_MEMORY = """
SELECT memory_id, agent_id, session_id, type, title, content, tags, confidence, created_at,
       source, metadata, updated_at, occurred_at, valid_until, expired_at, expired_reason
FROM memories
WHERE owner_id = $1 AND agent_id = $2 AND memory_id = $3
"""

# Each field changes only when its flag is set, so that `null` can clear a field while an
# absent field stays as it was. The generated `search` column follows by itself.
PATCH_MEMORY = """
UPDATE memories SET
    content    = CASE WHEN $4  THEN $5::text    ELSE content END,
    type       = CASE WHEN $6  THEN $7::text    ELSE type END,
    title      = CASE WHEN $8  THEN $9::text    ELSE title END,
    tags       = CASE WHEN $10 THEN $11::text[] ELSE tags END,
    confidence = CASE WHEN $12 THEN $13::real   ELSE confidence END,
    source     = CASE WHEN $14 THEN $15::text   ELSE source END,
    metadata   = CASE WHEN $16 THEN $17::jsonb  ELSE metadata END,
    occurred_at = CASE WHEN $18 THEN $19::timestamptz ELSE occurred_at END,
    valid_until = CASE WHEN $20 THEN $21::timestamptz ELSE valid_until END,
    updated_at = now()
WHERE owner_id = $1 AND agent_id = $2 AND memory_id = $3
RETURNING memory_id, agent_id, session_id, type, title, content, tags, confidence, created_at,
          source, metadata, updated_at, occurred_at, valid_until, expired_at, expired_reason
"""

DELETE_MEMORY = """
DELETE FROM memories WHERE owner_id = $1 AND agent_id = $2 AND memory_id = $3 RETURNING memory_id
"""


def _row(record: asyncpg.Record) -> MemoryRow:
    return MemoryRow(
        memory_id=str(record["memory_id"]),
        agent_id=record["agent_id"],
        session_id=record["session_id"],
        type=record["type"],
        title=record["title"],
        content=record["content"],
        tags=list(record["tags"]),
        confidence=float(record["confidence"]),
        source=record.get("source"),
        metadata=record.get("metadata"),
        created_at=record["created_at"],
        updated_at=record.get("updated_at"),
        score=float(record.get("score") or 0.0),
        occurred_at=record.get("occurred_at"),
        valid_until=record.get("valid_until"),
        expired_at=record.get("expired_at"),
        expired_reason=record.get("expired_reason"),
    )


def _filter_args(filters: MemoryFilters) -> tuple[Any, ...]:
    return (
        list(filters.types) if filters.types else None,
        list(filters.tags) if filters.tags else None,
        filters.created_after,
        filters.created_before,
    )


# More words than this are ranked the plain way: the pairs of words grow as their square.
MOST_TIERED_WORDS = 12


def word_pairs(text: str) -> str | None:
    """For `a or b or c` (or one word), the websearch text `a b or a c or b c` (None for one
    word); "" when `text` is of another kind (SEARCH_RANKED_TIERS would not tier it)."""
    words = text.split()
    terms = words[::2]
    if (
        any(c in text for c in '"-')
        or any(w.lower() != "or" for w in words[1::2])
        or any(w.lower() == "or" for w in terms)
        or not 0 < len(terms) <= MOST_TIERED_WORDS
    ):
        return ""
    pairs = [f"{a} {b}" for i, a in enumerate(terms) for b in terms[i + 1 :]]
    return " or ".join(pairs) if pairs else None


def _search_args(
    owner_id: str,
    agent_id: str,
    text: str,
    filters: MemoryFilters,
    min_score: float | None,
    after: Position | None,
    limit: int,
) -> tuple[Any, ...]:
    return (
        UUID(owner_id),
        agent_id,
        text,
        *_filter_args(filters),
        min_score,
        after.score if after else None,
        after.created_at if after else None,
        UUID(after.memory_id) if after else None,
        limit,
    )


class NewMemory(msgspec.Struct, frozen=True):
    """One `remember` on its way to Postgres."""

    owner_id: UUID
    agent_id: str
    session_id: str
    memory: RememberRequest
    idempotency_key: str | None
    fingerprint: str | None  # of the request, when it carries an idempotency key


def _json_text(value: Any) -> str | None:
    # Lists of lists would be read as a two-dimensional array: tags and metadata travel as JSON text.
    return None if value is None else msgspec.json.encode(value).decode()


class MemoryRepository:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._remembers: Coalescer[NewMemory, Stored] = Coalescer(
            self._insert_group, max_batch=REMEMBER_GROUP, max_in_flight=1
        )

    async def insert(
        self,
        owner_id: str,
        agent_id: str,
        session_id: str,
        memory: RememberRequest,
        idempotency_key: str | None,
        fingerprint: str | None = None,
    ) -> Stored:
        """Store one memory (committed on return), or find the one its idempotency key stored first.

        The inserts of concurrent requests go to Postgres together, as a group commit: one
        statement (INSERT_GROUP), one round trip and one commit for up to REMEMBER_GROUP of them.
        """
        return await self._remembers.submit(
            NewMemory(UUID(owner_id), agent_id, session_id, memory, idempotency_key, fingerprint)
        )

    async def _insert_group(self, group: list[NewMemory]) -> list[Stored | Exception]:
        if len(group) == 1:
            return [await outcome_of(self._insert_one(group[0]))]
        memory_ids = [uuid4() for _ in group]
        try:
            inserted = await self._db.fetch(
                INSERT_GROUP,
                memory_ids,
                [new.owner_id for new in group],
                [new.agent_id for new in group],
                [new.session_id for new in group],
                [new.memory.type for new in group],
                [new.memory.title for new in group],
                [new.memory.content for new in group],
                [_json_text(new.memory.tags) for new in group],
                [new.memory.confidence for new in group],
                [new.memory.source for new in group],
                [_json_text(new.memory.metadata) for new in group],
                [new.idempotency_key for new in group],
                [new.fingerprint for new in group],
                [new.memory.occurred_at for new in group],
                [new.memory.valid_until for new in group],
            )
        except asyncpg.PostgresError as exc:
            if isinstance(exc, POSTGRES_OUTAGE):
                raise
            # One row's fault (its agent deleted meanwhile, say) fails the statement: each on its own.
            return list(await asyncio.gather(*(outcome_of(self._insert_one(new)) for new in group)))
        created = {record["memory_id"]: record["created_at"] for record in inserted}
        return [
            Stored(str(memory_id), new.session_id, new.memory.type, created[memory_id], replayed=False)
            if memory_id in created
            else await outcome_of(self._first_stored(new))
            for new, memory_id in zip(group, memory_ids, strict=True)
        ]

    async def _insert_one(self, new: NewMemory) -> Stored:
        memory = new.memory
        record = await self._db.fetchrow(
            INSERT_MEMORY,
            new.owner_id,
            new.agent_id,
            new.session_id,
            memory.type,
            memory.title,
            memory.content,
            memory.tags,
            memory.confidence,
            memory.source,
            memory.metadata,
            new.idempotency_key,
            new.fingerprint,
            memory.occurred_at,
            memory.valid_until,
        )
        if record is None:
            return await self._first_stored(new)
        return Stored(str(record["memory_id"]), new.session_id, memory.type, record["created_at"], replayed=False)

    async def _first_stored(self, new: NewMemory) -> Stored:
        """The memory that an earlier request with the same idempotency key stored."""
        first = await self._db.fetchrow(FIND_BY_IDEMPOTENCY_KEY, new.owner_id, new.agent_id, new.idempotency_key)
        assert first is not None, "a conflicting idempotent insert must be visible once committed"
        return Stored(
            str(first["memory_id"]),
            first["session_id"],
            first["type"],
            first["created_at"],
            replayed=True,
            fingerprint=first["idempotency_fingerprint"],
        )

    async def insert_batch(
        self,
        owner_id: str,
        agent_id: str,
        session_id: str,
        memory_ids: list[UUID],
        memories: list[RememberRequest],
        fingerprints: list[str | None],
    ) -> list[str]:
        """Store the batch; return each item's memory id (the first one's, for an item seen before).

        All or nothing: an item whose idempotency key was first used with another request
        (its fingerprint differs) raises KeyReused, and the batch is rolled back."""
        count = len(memories)
        args = (
            memory_ids,
            [UUID(owner_id)] * count,
            [agent_id] * count,
            [session_id] * count,
            [m.type for m in memories],
            [m.title for m in memories],
            [m.content for m in memories],
            [_json_text(m.tags) for m in memories],
            [m.confidence for m in memories],
            [m.source for m in memories],
            [_json_text(m.metadata) for m in memories],
            [m.idempotency_key for m in memories],
            fingerprints,
            [m.occurred_at for m in memories],
            [m.valid_until for m in memories],
        )
        ids = [str(i) for i in memory_ids]
        if not any(m.idempotency_key for m in memories):
            await self._db.fetch(INSERT_GROUP, *args)  # nothing can conflict: one statement, one commit
            return ids
        async with self._db.transaction() as conn:
            new = {str(r["memory_id"]) for r in await conn.fetch(INSERT_GROUP, *args)}
            if len(new) == count:
                return ids
            keys = [m.idempotency_key for m, i in zip(memories, ids, strict=True) if i not in new and m.idempotency_key]
            earlier = await conn.fetch(FIND_BY_IDEMPOTENCY_KEYS, UUID(owner_id), agent_id, keys)
            first = {r["idempotency_key"]: r for r in earlier}
            answer = []
            for index, (memory, memory_id, fingerprint) in enumerate(zip(memories, ids, fingerprints, strict=True)):
                if memory_id in new:
                    answer.append(memory_id)
                    continue
                stored = first[memory.idempotency_key or ""]
                if stored["idempotency_fingerprint"] not in (None, fingerprint):
                    raise KeyReused(index)  # leaving the block rolls the batch back
                answer.append(str(stored["memory_id"]))
            return answer

    async def search(
        self,
        owner_id: str,
        agent_id: str,
        text: str,
        *,
        filters: MemoryFilters,
        min_score: float | None,
        after: Position | None,
        limit: int,
        tiered: bool = True,
    ) -> list[MemoryRow]:
        """The best `limit` matches after `after`, in SEARCH_TEXT's order; `tiered=False`
        finds them the plain way, ranking every match (the reference of the tests)."""
        args = _search_args(owner_id, agent_id, text, filters, min_score, after, limit)
        pairs = word_pairs(text) if tiered else ""
        if pairs == "":
            return [_row(r) for r in await self._db.fetch(SEARCH_TEXT, *args, filters.include_expired)]
        records = await self._db.fetch(SEARCH_RANKED_TIERS, *args, pairs, filters.include_expired)
        high = [_row(r) for r in records if r["tier"] == "high"]
        ids = {r.memory_id for r in high}
        low = [(_row(r), r["low_score"]) for r in records if r["tier"] == "low" and str(r["memory_id"]) not in ids]
        if any(row.score != low_score for row, low_score in low):
            # Cannot happen while migration 0004's reasoning about ranks holds; should it
            # ever stop holding (a change to ts_rank_cd, say), rank every match as before.
            logger.warning("recall: a match outside the high tier ranks above the lowest rank; ranking every match")
            return [_row(r) for r in await self._db.fetch(SEARCH_TEXT, *args, filters.include_expired)]
        high.sort(key=lambda r: (r.score, r.created_at, r.memory_id), reverse=True)
        newest = sorted((row for row, _ in low), key=lambda r: (r.created_at, r.memory_id), reverse=True)
        return (high + newest)[:limit]

    async def similar_words(self, owner_id: str, agent_id: str, words: list[str]) -> list[str]:
        """The agent's own words closest to each of `words` (misspelled or partial)."""
        rows = await self._db.fetch(SUGGEST_WORDS, UUID(owner_id), agent_id, words)
        return list(dict.fromkeys(r["word"] for r in rows))

    async def list(
        self, owner_id: str, agent_id: str, filters: MemoryFilters, after: Position | None, limit: int
    ) -> list[MemoryRow]:
        rows = await self._db.fetch(
            LIST_MEMORIES,
            UUID(owner_id),
            agent_id,
            *_filter_args(filters),
            after.created_at if after else None,
            UUID(after.memory_id) if after else None,
            limit,
        )
        return [_row(r) for r in rows]

    async def get(self, owner_id: str, agent_id: str, memory_id: UUID) -> MemoryRow | None:
        record = await self._db.fetchrow(GET_MEMORY, UUID(owner_id), agent_id, memory_id)
        return None if record is None else _row(record)

    async def patch(self, owner_id: str, agent_id: str, memory_id: UUID, patch: MemoryPatch) -> MemoryRow | None:
        args: list[Any] = [UUID(owner_id), agent_id, memory_id]
        for field in (
            "content",
            "type",
            "title",
            "tags",
            "confidence",
            "source",
            "metadata",
            "occurred_at",
            "valid_until",
        ):
            value = getattr(patch, field)
            args += [value is not msgspec.UNSET, None if value is msgspec.UNSET else value]
        record = await self._db.fetchrow(PATCH_MEMORY, *args)
        return None if record is None else _row(record)

    async def delete(self, owner_id: str, agent_id: str, memory_id: UUID) -> bool:
        return await self._db.fetchval(DELETE_MEMORY, UUID(owner_id), agent_id, memory_id) is not None
