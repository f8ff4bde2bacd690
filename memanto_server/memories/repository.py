"""Memories in Postgres, always scoped to owner and agent."""

from __future__ import annotations

import asyncio
import logging
import os
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import msgspec

from memanto_server.errors import POSTGRES_OUTAGE
from memanto_server.lib.coalesce import Coalescer, outcome_of
from memanto_server.lib.db import Database
from memanto_server.memories.schemas import MemoryFilters, MemoryPatch, RememberRequest
from memanto_server.memories.search.grammar import Query as TextQuery
from memanto_server.memories.search.ranking import Corpus

logger = logging.getLogger("memanto.memories")

# The `remember` calls of concurrent requests are stored as a group commit (memanto_server/lib/coalesce.py):
# one INSERT_GROUP at a time per worker, of at most REMEMBER_GROUP rows, so that a burst is
# stored, and answered, in waves (bench/README.md, "Group commit"; 8 rather than 16 since the
# request path got cheaper: "Answers, `remember`'s rows and where embedding runs").
REMEMBER_GROUP = 8

# Recall counts an agent's memories up to this many (the population that weighs a term's
# rarity), and from this many on reads each term's newest holders by window of time
# (migration 0016). An agent known to have this many (memories/sizes.py) is not counted again.
POPULATION_UP_TO = 10_000


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
    seq: int | None = None  # insertion order (migration 0008); None for memories stored before it
    score: float = 0.0  # a search's own measure of the match (cosine similarity for nearest neighbours)
    occurred_at: datetime | None = None
    valid_until: datetime | None = None
    expired_at: datetime | None = None
    expired_reason: str | None = None


class TextHit(msgspec.Struct, frozen=True):
    """A memory that holds some term of a recall query: its place in time and each term's strength in it."""

    memory_id: str
    created_at: datetime
    seq: int | None
    strengths: tuple[float, ...]


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


# One memory. $1 owner, $2 agent, $3 session, $4 type, $5 title, $6 content, $7 tags,
# $8 confidence, $9 source, $10 metadata, $11 idempotency key, $12 its request's fingerprint,
# $13 occurred_at (NULL: now), $14 valid_until. With an Idempotency-Key, the partial unique index
# is the guard: of concurrent retries one inserts, the others wait for it to commit and then
# insert nothing.
INSERT_MEMORY = """
INSERT INTO memories (owner_id, agent_id, session_id, type, title, content, tags, confidence, source, metadata,
                      idempotency_key, idempotency_fingerprint, occurred_at, valid_until)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, coalesce($13, now()), $14)
ON CONFLICT (owner_id, agent_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING memory_id, created_at
"""

# The memory stored under an idempotency key ($1 owner, $2 agent, $3 key). A separate statement
# on purpose: its snapshot is taken after the conflicting insert committed.
FIND_BY_IDEMPOTENCY_KEY = """
SELECT memory_id, session_id, type, created_at, idempotency_fingerprint FROM memories
WHERE owner_id = $1 AND agent_id = $2 AND idempotency_key = $3
"""

# Many memories in one statement, one commit, all or none: a batch-remember, or the
# `remember` calls of concurrent requests (one event-loop turn; memanto_server/lib/coalesce.py), rows of
# any owners, agents and sessions. As in INSERT_MEMORY, the partial unique index is the
# guard for idempotency keys, between these rows as well (of two with one key, the second
# inserts nothing), so a retried or resumed batch stores nothing twice; RETURNING names
# what was inserted. $1: the rows, a JSON array of GroupRow objects. One JSON text rather than
# fifteen parallel arrays: the driver encodes an array element by element, with several type
# checks each, which was a tenth of a `remember`'s CPU time (bench/README.md, "Answers").
INSERT_GROUP = """
INSERT INTO memories (memory_id, owner_id, agent_id, session_id, type, title, content, tags, confidence, source,
                      metadata, idempotency_key, idempotency_fingerprint, occurred_at, valid_until)
SELECT g.memory_id, g.owner_id, g.agent_id, g.session_id, g.type, g.title, g.content, g.tags, g.confidence,
       g.source, g.metadata, g.idempotency_key, g.idempotency_fingerprint, coalesce(g.occurred_at, now()),
       g.valid_until
FROM json_to_recordset($1::json)
     AS g(memory_id uuid, owner_id uuid, agent_id text, session_id text, type text, title text, content text,
          tags text[], confidence real, source text, metadata jsonb, idempotency_key text,
          idempotency_fingerprint text, occurred_at timestamptz, valid_until timestamptz)
ON CONFLICT (owner_id, agent_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING memory_id, created_at
"""

# The memories that earlier requests stored under some of a batch's keys, with the fingerprint
# of each one's request: $1 owner, $2 agent, $3 the keys.
FIND_BY_IDEMPOTENCY_KEYS = """
SELECT idempotency_key, memory_id, idempotency_fingerprint FROM memories
WHERE owner_id = $1 AND agent_id = $2 AND idempotency_key = ANY($3::text[])
"""

# The memories that hold any term of a recall query (memories/search/grammar.py), with what
# ranking needs to weigh them (memories/search/ranking.py): for each term, the newest `$10`
# memories that hold it after the filters (memories_holding(): for a word that many memories
# hold, its newest ones; for a rarer word, all of them); then for each of those memories the
# strength of every term in it (ts_rank_cd without normalisation: 1.0 per occurrence in the
# title, 0.4 per occurrence in the content; 1 or 0 for a character pair), and on every row
# how many memories of the agent hold each term (up to `$10`: the terms' rarity), whether
# full-text search keeps each term at all (stop words: no), and how many memories the agent
# has (up to `$12`). Rows only: the page's memories are read by GET_MEMORIES. All but the
# count is recall_text_candidates() (migrations 0015, 0016), planned once per connection; an
# agent with `$12` memories or more has each term's newest holders read by window of time.
#   $1 owner, $2 agent, $3 term texts, $4 term kinds (word, phrase, typo, gram),
#   $5 excluded words (`a or b`, websearch syntax; '' for none),
#   $6 types, $7 tags, $8 created after, $9 created before ($6-$9 NULL = no filter),
#   $10 memories per term, $11 include expired memories (else only those not expired now),
#   $12 POPULATION_UP_TO, $13 the agent is known to have that many (then it is not counted).
# A new filter on memories goes into memories_holding() and recall_text_candidates().
SEARCH_TEXT = """
SELECT c.memory_id, c.created_at, c.seq, c.strengths, c.frequencies, c.searchable, agent.memories AS population
FROM (SELECT CASE WHEN $13::boolean THEN $12::int ELSE (
          SELECT count(*)::int FROM (SELECT 1 FROM memories a WHERE a.owner_id = $1 AND a.agent_id = $2 LIMIT $12) AS a
      ) END AS memories) AS agent,
     recall_text_candidates($1, $2, $3::text[], $4::text[], $5, $6::text[], $7::text[], $8::timestamptz,
                            $9::timestamptz, $10::int, $11::boolean, agent.memories >= $12) AS c
"""

# Memories of one agent by id (the rows of a page of recall): $1 owner, $2 agent, $3 ids.
GET_MEMORIES = """
SELECT memory_id, agent_id, session_id, type, title, content, tags, confidence, created_at, seq,
       occurred_at, valid_until, expired_at
FROM memories
WHERE owner_id = $1 AND agent_id = $2 AND memory_id = ANY($3::uuid[])
"""

# The fallback for misspelled or partial words: for each query word that no memory of the
# agent holds, the agent's own words that the trigram index finds alike (`<%`,
# pg_trgm.word_similarity_threshold) and that are also close in edits (one for short
# words, two for longer ones) or that complete it (a partial word). $3: the query's words.
SUGGEST_WORDS = """
SELECT q.word AS typed, s.word
FROM unnest($3::text[]) AS q(word)
CROSS JOIN LATERAL (
    SELECT l.word FROM memory_lexicon l
    WHERE l.owner_id = $1 AND l.agent_id = $2 AND q.word <% l.word
      AND (levenshtein_less_equal(q.word, l.word, 2) <= CASE WHEN length(q.word) <= 4 THEN 1 ELSE 2 END
           OR (length(q.word) >= 4 AND starts_with(l.word, q.word)))
    ORDER BY levenshtein_less_equal(q.word, l.word, 3), word_similarity(q.word, l.word) DESC, l.word
    LIMIT 3
) s
WHERE NOT EXISTS (
    SELECT 1 FROM memory_lexicon k WHERE k.owner_id = $1 AND k.agent_id = $2 AND k.word = q.word
)
"""

# How alike pairs of one agent's memories are in meaning: the cosine similarity of their
# embeddings ($3 earlier and $4 later memory ids, pairwise); no row for a pair of which a
# memory has no embedding yet.
PAIR_SIMILARITY = """
SELECT p.earlier, p.later, (1 - (a.embedding <=> b.embedding))::float8 AS similarity
FROM unnest($3::uuid[], $4::uuid[]) AS p(earlier, later)
JOIN memories a ON a.owner_id = $1 AND a.agent_id = $2 AND a.memory_id = p.earlier
JOIN memories b ON b.owner_id = $1 AND b.agent_id = $2 AND b.memory_id = p.later
WHERE a.embedding IS NOT NULL AND b.embedding IS NOT NULL
"""

# A page of an agent's memories, newest first, for `GET …/memories`: $1 owner, $2 agent,
# $3 types, $4 tags (all of them), $5 created after, $6 created before ($3-$6 NULL = no filter),
# $7 and $8 the cursor (created_at and memory_id of the last row of the page before; NULL on
# the first page), $9 rows.
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

# One memory with every field: $1 owner, $2 agent, $3 memory id.
GET_MEMORY = """
SELECT memory_id, agent_id, session_id, type, title, content, tags, confidence, created_at,
       source, metadata, updated_at, occurred_at, valid_until, expired_at, expired_reason
FROM memories
WHERE owner_id = $1 AND agent_id = $2 AND memory_id = $3
"""

# PATCH of one memory ($1 owner, $2 agent, $3 memory id), then for each field a flag and its
# value ($4/$5 content … $20/$21 valid_until): a field changes only when its flag is set, so
# that `null` can clear a field while an absent field stays as it was. The generated `search`
# column follows by itself.
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

# Deletes one memory: $1 owner, $2 agent, $3 memory id.
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
        seq=record.get("seq"),
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


class NewMemory(msgspec.Struct, frozen=True):
    """One `remember` on its way to Postgres."""

    owner_id: UUID
    agent_id: str
    session_id: str
    memory: RememberRequest
    idempotency_key: str | None
    fingerprint: str | None  # of the request, when it carries an idempotency key


def new_memory_ids(count: int) -> list[UUID]:
    """`count` version-4 UUIDs, as `uuid4()` makes them, from one read of the system's random
    source rather than one per id."""
    random = os.urandom(16 * count)
    return [UUID(bytes=random[start : start + 16], version=4) for start in range(0, 16 * count, 16)]


class GroupRow(msgspec.Struct):
    """One row of INSERT_GROUP, as its JSON parameter carries it (the names are its columns')."""

    memory_id: UUID
    owner_id: UUID
    agent_id: str
    session_id: str
    type: str
    title: str | None
    content: str
    tags: list[str]
    confidence: float
    source: str | None
    metadata: dict[str, Any] | None
    idempotency_key: str | None
    idempotency_fingerprint: str | None
    occurred_at: datetime | None
    valid_until: datetime | None


def group_row(
    memory_id: UUID,
    owner_id: UUID,
    agent_id: str,
    session_id: str,
    memory: RememberRequest,
    idempotency_key: str | None,
    fingerprint: str | None,
) -> GroupRow:
    return GroupRow(
        memory_id,
        owner_id,
        agent_id,
        session_id,
        memory.type,
        memory.title,
        memory.content,
        memory.tags,
        memory.confidence,
        memory.source,
        memory.metadata,
        idempotency_key,
        fingerprint,
        memory.occurred_at,
        memory.valid_until,
    )


def _rows_json(rows: list[GroupRow]) -> str:
    return msgspec.json.encode(rows).decode()


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
        memory_ids = new_memory_ids(len(group))
        try:
            rows = [
                group_row(
                    memory_id,
                    new.owner_id,
                    new.agent_id,
                    new.session_id,
                    new.memory,
                    new.idempotency_key,
                    new.fingerprint,
                )
                for memory_id, new in zip(memory_ids, group, strict=True)
            ]
            inserted = await self._db.fetch(INSERT_GROUP, _rows_json(rows))
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
        owner = UUID(owner_id)
        rows = _rows_json(
            [
                group_row(memory_id, owner, agent_id, session_id, m, m.idempotency_key, fingerprint)
                for memory_id, m, fingerprint in zip(memory_ids, memories, fingerprints, strict=True)
            ]
        )
        ids = [str(i) for i in memory_ids]
        if not any(m.idempotency_key for m in memories):
            await self._db.fetch(INSERT_GROUP, rows)  # nothing can conflict: one statement, one commit
            return ids
        async with self._db.transaction() as conn:
            new = {str(r["memory_id"]) for r in await conn.fetch(INSERT_GROUP, rows)}
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

    async def search_text(
        self,
        owner_id: str,
        agent_id: str,
        query: TextQuery,
        filters: MemoryFilters,
        per_term: int,
        *,
        known_large: bool = False,
    ) -> tuple[list[TextHit], Corpus | None]:
        """The memories that hold any of the query's terms, each with its terms' strengths,
        and the corpus figures that weigh the terms (None when nothing matched). `known_large`:
        the agent is known to have POPULATION_UP_TO memories or more, and is not counted."""
        terms = query.terms
        records = await self._db.fetch(
            SEARCH_TEXT,
            UUID(owner_id),
            agent_id,
            [t.text for t in terms],
            [t.kind for t in terms],
            " or ".join(query.excluded),
            *_filter_args(filters),
            per_term,
            filters.include_expired,
            POPULATION_UP_TO,
            known_large,
        )
        if not records:
            return [], None
        first = records[0]
        corpus = Corpus(
            frequencies=tuple(first["frequencies"]),
            searchable=tuple(first["searchable"]),
            population=first["population"],
        )
        hits = [TextHit(str(r["memory_id"]), r["created_at"], r["seq"], tuple(r["strengths"])) for r in records]
        return hits, corpus

    async def get_many(self, owner_id: str, agent_id: str, memory_ids: list[str]) -> dict[str, MemoryRow]:
        records = await self._db.fetch(GET_MEMORIES, UUID(owner_id), agent_id, [UUID(i) for i in memory_ids])
        return {str(r["memory_id"]): _row(r) for r in records}

    async def pair_similarity(
        self, owner_id: str, agent_id: str, pairs: list[tuple[str, str]]
    ) -> dict[tuple[str, str], float]:
        """Cosine similarity of the embeddings of the two memories of each pair."""
        records = await self._db.fetch(
            PAIR_SIMILARITY,
            UUID(owner_id),
            agent_id,
            [UUID(earlier) for earlier, _ in pairs],
            [UUID(later) for _, later in pairs],
        )
        return {(str(r["earlier"]), str(r["later"])): float(r["similarity"]) for r in records}

    async def similar_words(self, owner_id: str, agent_id: str, words: list[str]) -> dict[str, list[str]]:
        """For each of `words` that no memory of the agent holds, the agent's own words
        closest to it (it is misspelled or partial)."""
        corrections: dict[str, list[str]] = {}
        for record in await self._db.fetch(SUGGEST_WORDS, UUID(owner_id), agent_id, words):
            corrections.setdefault(record["typed"], []).append(record["word"])
        return corrections

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
