"""Every SQL statement about embeddings: the worker's queue, the recorded model, and KNN for recall.

Vectors travel as `real[]` (asyncpg's own binary float4 array) and are cast to `vector` in
SQL: no codec to register on connections, and nothing but numbers on the wire.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import asyncpg
import msgspec

from memanto_server.lib.db import Database
from memanto_server.memories.repository import POPULATION_UP_TO, MemoryRow
from memanto_server.memories.schemas import MemoryFilters

if TYPE_CHECKING:  # numpy is imported where vectors are handled: a server without an embedder never loads it
    import numpy as np

# Worker-side limits: a claimed batch is embedded while its rows are held, so it stays small.
MAX_BATCH = 256

# The memories to embed next, held until the transaction ends (the caller's): concurrent
# workers skip each other's rows (SKIP LOCKED), so each memory is embedded by one of them.
# Oldest first, by the partial index memories_unembedded. $1 = how many, $2 = memories to
# pass over (their text was refused by the embedder).
CLAIM_UNEMBEDDED = """
SELECT memory_id, title, content FROM memories
WHERE embedding IS NULL AND memory_id <> ALL($2::uuid[])
ORDER BY created_at, memory_id
LIMIT $1
FOR UPDATE SKIP LOCKED
"""

# Store the embeddings of claimed rows: $1 the memory ids, $2 their vectors one after another
# (flat, $3 numbers each). Only while $4/$3 is still the recorded model: a worker left
# running with the previous model after `reembed` began stores nothing.
STORE_EMBEDDINGS = """
UPDATE memories m
SET embedding = (($2::real[])[(b.i - 1) * $3 + 1 : b.i * $3])::vector
FROM unnest($1::uuid[]) WITH ORDINALITY AS b(memory_id, i)
WHERE m.memory_id = b.memory_id
  AND EXISTS (SELECT 1 FROM embedding_model WHERE model_id = $4 AND dimension = $3)
"""

# How many memories wait for an embedding, counted up to $1 (a bounded cost whatever the backlog).
COUNT_BACKLOG = """
SELECT count(*) FROM (SELECT 1 FROM memories WHERE embedding IS NULL LIMIT $1) AS waiting
"""

# Every memory, and those with an embedding: the progress of a re-embedding.
COUNT_EMBEDDED = "SELECT count(*) AS total, count(embedding) AS embedded FROM memories"

# The recorded embedding model (none until the first start with an embedder).
GET_MODEL = "SELECT model_id, dimension, complete FROM embedding_model"

# Record the model of the embeddings (the one row of embedding_model).
RECORD_MODEL = """
INSERT INTO embedding_model (model_id, dimension, complete) VALUES ($1, $2, $3)
ON CONFLICT (singleton) DO UPDATE
SET model_id = excluded.model_id, dimension = excluded.dimension, complete = excluded.complete, recorded_at = now()
"""

# The first model recorded; of processes starting at once with different models, one wins
# and the others find its model recorded.
RECORD_FIRST_MODEL = """
INSERT INTO embedding_model (model_id, dimension, complete) VALUES ($1, $2, true)
ON CONFLICT (singleton) DO NOTHING
"""

# Every memory has an embedding of model $1 of dimension $2 (re-embedding done).
MARK_COMPLETE = "UPDATE embedding_model SET complete = true WHERE model_id = $1 AND dimension = $2"

# The dimension of memories.embedding as declared (atttypmod of a vector column is its dimension).
COLUMN_DIMENSION = """
SELECT atttypmod FROM pg_attribute
WHERE attrelid = 'memories'::regclass AND attname = 'embedding' AND NOT attisdropped
"""

# Drop every embedding and give the column a new dimension (migration 0006).
RESET_EMBEDDINGS = "SELECT memanto_reset_embeddings($1)"

# The column's indexes as migration 0007 builds them, for `reembed` after a reset; an index
# left invalid by a failed concurrent build is dropped first (IF NOT EXISTS would keep it).
INVALID_EMBEDDING_INDEXES = """
SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE i.indrelid = 'memories'::regclass AND NOT i.indisvalid
  AND c.relname IN ('memories_embedding_hnsw', 'memories_unembedded')
"""
DROP_HNSW_INDEX = "DROP INDEX CONCURRENTLY IF EXISTS memories_embedding_hnsw"
DROP_UNEMBEDDED_INDEX = "DROP INDEX CONCURRENTLY IF EXISTS memories_unembedded"
# The indexes of migration 0007 again, after `reembed` reset the column.
CREATE_HNSW_INDEX = """
CREATE INDEX CONCURRENTLY IF NOT EXISTS memories_embedding_hnsw ON memories USING hnsw (embedding vector_cosine_ops)
"""
# The worker's queue index of migration 0007 again.
CREATE_UNEMBEDDED_INDEX = """
CREATE INDEX CONCURRENTLY IF NOT EXISTS memories_unembedded ON memories (created_at, memory_id)
WHERE embedding IS NULL
"""

# An agent with fewer memories than this is searched exactly (every one of its memories'
# distance, read by its own index), a larger one through the HNSW index: exact answers where
# they are cheap, and the graph only where the agent is large enough for a filtered graph
# walk to meet its memories soon. The size from which recall reads text by window too: an agent
# known to be that large (memories/sizes.py) is not counted again by either.
EXACT_UP_TO = POPULATION_UP_TO
# The most rows a walk of the graph returns (a large agent's nearest neighbours). One pass of
# the walk yields hnsw.ef_search candidates (100 on the app's connections, lifespan.py); asking
# for as many as that, a single other agent's or filtered-out row among them sends the iterative
# scan on a second pass that costs as much again. Asking for fewer keeps most walks to one pass,
# and a recall ranks these with its text candidates, pages of ten at a time.
GRAPH_UP_TO = 40

# The `limit` memories of one owner+agent nearest to a query vector, by cosine distance, with
# recall's filters (as in memories/repository.py SEARCH_TEXT): $1 owner, $2 agent, $3 query
# vector (real[]), $4 types, $5 tags (all must match), $6 created after, $7 created before
# ($4-$7 NULL = no filter), $8 limit, $9 the model of $3 (no rows unless it is the recorded
# model: vectors of two models are not comparable), $10 EXACT_UP_TO, $11 include expired
# memories (else only those that hold now: least(expired_at, valid_until) NULL or later),
# $12 GRAPH_UP_TO (the graph branch returns at most that many of the `limit`), $13 the agent is
# known to have $10 memories or more (memories/sizes.py).
# `size` counts the agent's memories up to $10 (its index, at most $10 entries) unless $13 says
# it has that many; one of the two
# branches runs, the other is cut off by its one-time filter:
#   exact:  the agent's memories read by memories_agent_created (a subquery with a LIMIT, which
#           neither the vector index nor a filter's index can serve), every distance computed,
#           the nearest kept;
#   graph:  `ORDER BY embedding <=> q LIMIT n` on the HNSW index, scanning on
#           (hnsw.iterative_scan, set on the app's connections) past other agents' and
#           filtered-out rows until n rows are found or hnsw.max_scan_tuples are read. It may
#           return rows slightly out of order: the outer query sorts them.
# Rows without an embedding yet are not returned (full-text search finds them).
NEAREST = """
WITH size AS MATERIALIZED (
    SELECT CASE WHEN $13::boolean THEN $10::bigint ELSE (
        SELECT count(*) FROM (SELECT 1 FROM memories WHERE owner_id = $1 AND agent_id = $2 LIMIT $10) AS agent
    ) END AS memories
),
exact AS MATERIALIZED (
    SELECT m.memory_id, m.agent_id, m.session_id, m.type, m.title, m.content, m.tags, m.confidence, m.created_at,
           m.seq, m.occurred_at, m.valid_until, m.expired_at, m.embedding <=> $3::real[]::vector AS distance
    FROM (
        -- The agent's memories, by memories_agent_created and nothing else (the LIMIT keeps the
        -- filters below out of this scan: a tag's or a type's index would read other agents' rows).
        SELECT * FROM memories
        WHERE (SELECT memories FROM size) < $10 AND owner_id = $1 AND agent_id = $2
        LIMIT $10
    ) AS m
    WHERE m.embedding IS NOT NULL
      AND ($4::text[] IS NULL OR m.type = ANY($4::text[]))
      AND ($5::text[] IS NULL OR m.tags @> $5::text[])
      AND ($6::timestamptz IS NULL OR m.created_at > $6::timestamptz)
      AND ($7::timestamptz IS NULL OR m.created_at < $7::timestamptz)
      AND ($11::boolean OR coalesce(least(m.expired_at, m.valid_until) > now(), true))
      AND (SELECT model_id FROM embedding_model) = $9
    ORDER BY m.embedding <=> $3::real[]::vector
    LIMIT $8
),
graph AS MATERIALIZED (
    SELECT m.memory_id, m.agent_id, m.session_id, m.type, m.title, m.content, m.tags, m.confidence, m.created_at,
           m.seq, m.occurred_at, m.valid_until, m.expired_at, m.embedding <=> $3::real[]::vector AS distance
    FROM memories m
    WHERE (SELECT memories FROM size) >= $10
      AND m.owner_id = $1 AND m.agent_id = $2 AND m.embedding IS NOT NULL
      AND ($4::text[] IS NULL OR m.type = ANY($4::text[]))
      AND ($5::text[] IS NULL OR m.tags @> $5::text[])
      AND ($6::timestamptz IS NULL OR m.created_at > $6::timestamptz)
      AND ($7::timestamptz IS NULL OR m.created_at < $7::timestamptz)
      AND ($11::boolean OR coalesce(least(m.expired_at, m.valid_until) > now(), true))
      AND (SELECT model_id FROM embedding_model) = $9
    ORDER BY m.embedding <=> $3::real[]::vector
    LIMIT least($8, $12)
)
SELECT memory_id, agent_id, session_id, type, title, content, tags, confidence, created_at, seq,
       occurred_at, valid_until, expired_at, (1 - distance)::float8 AS similarity
FROM (SELECT * FROM exact UNION ALL SELECT * FROM graph) AS nearest
ORDER BY distance, created_at DESC, memory_id DESC
"""

EXPLAIN_NEAREST = "EXPLAIN " + NEAREST


class Pending(msgspec.Struct, frozen=True):
    """A claimed memory: what its embedding is made of."""

    memory_id: UUID
    title: str | None
    content: str


class RecordedModel(msgspec.Struct, frozen=True):
    model_id: str
    dimension: int
    complete: bool


class Progress(msgspec.Struct, frozen=True):
    total: int
    embedded: int


def as_real_array(vector: Sequence[float] | np.ndarray) -> list[float]:
    import numpy as np

    return np.asarray(vector, dtype=np.float32).ravel().tolist()  # type: ignore[no-any-return]


class EmbeddingRepository:
    """Queries on the app's pool: KNN for recall, the backlog, the recorded model."""

    def __init__(self, db: Database, *, exact_up_to: int = EXACT_UP_TO, graph_up_to: int = GRAPH_UP_TO) -> None:
        self._db = db
        self._exact_up_to = exact_up_to
        self._graph_up_to = graph_up_to

    async def nearest(
        self,
        owner_id: str,
        agent_id: str,
        query: Sequence[float] | np.ndarray,
        *,
        model_id: str,
        filters: MemoryFilters | None = None,
        limit: int = 10,
        known_large: bool = False,
    ) -> list[MemoryRow]:
        """The agent's `limit` memories nearest to `query` (a vector of `model_id`), nearest first;
        at most `graph_up_to` of them for an agent too large to be searched exactly.

        Each row's `score` is its cosine similarity to the query (1 = same direction, 0 =
        unrelated, negative = opposed). Only memories passing `filters` and already embedded
        are returned; none when `model_id` is not the model of the stored embeddings.
        `known_large`: the agent is known to have `exact_up_to` memories or more (it is not
        counted again, and walks the graph).
        """
        args = self._nearest_args(owner_id, agent_id, query, model_id, filters, limit, known_large)
        rows = await self._db.fetch(NEAREST, *args)
        return [_memory_row(record) for record in rows]

    async def explain_nearest(
        self,
        owner_id: str,
        agent_id: str,
        query: Sequence[float] | np.ndarray,
        *,
        model_id: str,
        filters: MemoryFilters | None = None,
        limit: int = 10,
        known_large: bool = False,
    ) -> str:
        """The plan of `nearest` for these arguments (for tests and benchmarks)."""
        args = self._nearest_args(owner_id, agent_id, query, model_id, filters, limit, known_large)
        return "\n".join(r[0] for r in await self._db.fetch(EXPLAIN_NEAREST, *args))

    def _nearest_args(
        self,
        owner_id: str,
        agent_id: str,
        query: Sequence[float] | np.ndarray,
        model_id: str,
        filters: MemoryFilters | None,
        limit: int,
        known_large: bool,
    ) -> tuple[Any, ...]:
        filters = filters or MemoryFilters()
        return (
            UUID(owner_id),
            agent_id,
            as_real_array(query),
            list(filters.types) if filters.types else None,
            list(filters.tags) if filters.tags else None,
            filters.created_after,
            filters.created_before,
            limit,
            model_id,
            self._exact_up_to,
            filters.include_expired,
            self._graph_up_to,
            known_large,
        )

    async def backlog(self, up_to: int = 1_000_000) -> int:
        """How many memories wait for an embedding (counted up to `up_to`)."""
        return int(await self._db.fetchval(COUNT_BACKLOG, up_to))

    async def recorded_model(self) -> RecordedModel | None:
        return await recorded_model(self._db)


def _memory_row(record: asyncpg.Record) -> MemoryRow:
    created_at: datetime = record["created_at"]
    return MemoryRow(
        memory_id=str(record["memory_id"]),
        agent_id=record["agent_id"],
        session_id=record["session_id"],
        type=record["type"],
        title=record["title"],
        content=record["content"],
        tags=list(record["tags"]),
        confidence=float(record["confidence"]),
        created_at=created_at,
        seq=record["seq"],
        score=float(record["similarity"]),
        occurred_at=record["occurred_at"],
        valid_until=record["valid_until"],
        expired_at=record["expired_at"],
    )


async def recorded_model(db: Database | asyncpg.Connection[Any]) -> RecordedModel | None:
    record = await db.fetchrow(GET_MODEL)
    if record is None:
        return None
    return RecordedModel(record["model_id"], int(record["dimension"]), bool(record["complete"]))


# The worker's statements, on a connection of its own (it holds rows while it embeds them).


async def claim(conn: asyncpg.Connection[Any], limit: int, skip: list[UUID] | None = None) -> list[Pending]:
    """Claim up to `limit` memories without an embedding; call inside a transaction."""
    rows = await conn.fetch(CLAIM_UNEMBEDDED, min(limit, MAX_BATCH), skip or [])
    return [Pending(r["memory_id"], r["title"], r["content"]) for r in rows]


async def store(
    conn: asyncpg.Connection[Any], memory_ids: list[UUID], vectors: np.ndarray, *, model_id: str, dimension: int
) -> int:
    """Store the embeddings of claimed memories; how many were stored (0 if the model changed)."""
    status = await conn.execute(STORE_EMBEDDINGS, memory_ids, as_real_array(vectors), dimension, model_id)
    return int(status.split()[-1])


async def column_dimension(conn: asyncpg.Connection[Any]) -> int:
    return int(await conn.fetchval(COLUMN_DIMENSION))


async def record_model(conn: asyncpg.Connection[Any], model_id: str, dimension: int, *, complete: bool) -> None:
    await conn.execute(RECORD_MODEL, model_id, dimension, complete)


async def record_first_model(conn: asyncpg.Connection[Any], model_id: str, dimension: int) -> None:
    await conn.execute(RECORD_FIRST_MODEL, model_id, dimension)


async def mark_complete(conn: asyncpg.Connection[Any], model_id: str, dimension: int) -> None:
    await conn.execute(MARK_COMPLETE, model_id, dimension)


async def reset_embeddings(conn: asyncpg.Connection[Any], model_id: str, dimension: int) -> None:
    """Drop every embedding, size the column for `dimension` and record the model as incomplete."""
    async with conn.transaction():
        await conn.execute(RESET_EMBEDDINGS, dimension)
        await conn.execute(RECORD_MODEL, model_id, dimension, False)


async def ensure_indexes(conn: asyncpg.Connection[Any]) -> None:
    """Build the embedding column's indexes if missing (concurrently; outside a transaction)."""
    invalid = {r["relname"] for r in await conn.fetch(INVALID_EMBEDDING_INDEXES)}
    if "memories_embedding_hnsw" in invalid:
        await conn.execute(DROP_HNSW_INDEX)
    if "memories_unembedded" in invalid:
        await conn.execute(DROP_UNEMBEDDED_INDEX)
    await conn.execute(CREATE_UNEMBEDDED_INDEX)
    await conn.execute(CREATE_HNSW_INDEX)


async def progress(conn: asyncpg.Connection[Any]) -> Progress:
    record = await conn.fetchrow(COUNT_EMBEDDED)
    assert record is not None
    return Progress(total=int(record["total"]), embedded=int(record["embedded"]))


async def backlog(conn: asyncpg.Connection[Any], up_to: int = 1_000_000) -> int:
    return int(await conn.fetchval(COUNT_BACKLOG, up_to))
