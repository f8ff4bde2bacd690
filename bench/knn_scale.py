"""KNN for recall at scale: an agent with `--rows` memories (1,000,000) against one with `--small` (1,000).

    python -m bench.knn_scale [--rows 1000000] [--small 1000] [--queries 50] [--keep]

One database (on MEMANTO_BENCH_POSTGRES_URL, or a Postgres of the run's own), migrated by the
real runner, one owner with two agents: `big` and `small`. Embeddings are random 384-dimension
vectors made in SQL (random vectors have no cluster structure: the hardest case for the HNSW
graph). The rows are loaded before the index is built (as `reembed` or the 0007 migration on a
big table would build it), with maintenance_work_mem large enough for the graph.

Measured with `EmbeddingRepository.nearest` on the app's own kind of pool (iterative scan on),
the same random query vectors for both agents, limit 10:
- p50/p95 latency, unfiltered and with a type filter (1 type of 13) and a tag filter;
- recall@10 of the big agent's answers against exact distances (sequential scan);
- the plans chosen, index build time, table and index sizes.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import asyncpg
import msgspec
import numpy as np

from bench.common import database_url, drop_database, fresh_database
from memanto_server.embeddings.repository import EmbeddingRepository
from memanto_server.lib.db import Database
from memanto_server.lifespan import open_pool
from memanto_server.memories.schemas import MemoryFilters
from memanto_server.settings import Settings

DB_NAME = "memanto_bench_knn"
DIMENSION = 384
MODEL = "bench-random"
TYPES = ("fact", "preference", "goal", "decision", "artifact", "learning", "event", "instruction",
         "relationship", "context", "observation", "commitment", "error")  # fmt: skip

# Topics: random centres; a memory is its topic's centre plus noise (cosine about 0.5 to it),
# so that memories cluster as real embeddings do (uniformly random vectors would all be about
# equally far from any query, which no embedding model produces).
CENTRES = """
CREATE TABLE bench_centres AS
SELECT k, ARRAY(SELECT random() - 0.5 FROM generate_series(1, 384) WHERE k >= 0)::real[] AS centre
FROM generate_series(0, 999) AS k
"""
# Rows of one agent: their topic's centre plus noise, a type of 13 in turn, a tag on one in ten.
LOAD = """
INSERT INTO memories (owner_id, agent_id, session_id, type, content, tags, embedding, created_at)
SELECT $1::uuid, $2, 'bench', ($4::text[])[1 + (i % 13)], 'memory ' || i,
       CASE WHEN i % 10 = 0 THEN ARRAY['tagged'] ELSE '{}'::text[] END,
       (SELECT array_agg(c.v + (random() - 0.5) * 1.0) FROM unnest(b.centre) AS c(v))::vector,
       now() - make_interval(secs => i)
FROM generate_series($3::int, $3::int + $5::int - 1) AS i
JOIN bench_centres b ON b.k = (i::bigint * 7919) % 1000
"""
BATCH = 20_000


async def load(conn: asyncpg.Connection[Any], owner: str, agent: str, rows: int) -> None:
    await conn.execute("INSERT INTO agents (owner_id, agent_id) VALUES ($1::uuid, $2)", owner, agent)
    started = time.perf_counter()
    for first in range(1, rows + 1, BATCH):
        await conn.execute(LOAD, owner, agent, first, list(TYPES), min(BATCH, rows - first + 1))
        if first // BATCH % 10 == 0:
            print(
                f"  {agent}: {min(first + BATCH - 1, rows):,} rows ({time.perf_counter() - started:.0f} s)", flush=True
            )


async def prepare(rows: int, small: int) -> tuple[str, dict[str, float]]:
    url = await fresh_database(DB_NAME)
    conn = await asyncpg.connect(url, timeout=30, command_timeout=None)
    facts: dict[str, float] = {}
    try:
        await conn.execute("SET statement_timeout = 0")
        owner = await conn.fetchval("INSERT INTO owners (name) VALUES ('bench') RETURNING owner_id::text")
        await conn.execute(
            "INSERT INTO embedding_model (model_id, dimension, complete) VALUES ($1, $2, true)", MODEL, DIMENSION
        )
        # Loaded without the indexes of the embedding column, then built as 0007 builds them.
        await conn.execute("DROP INDEX memories_embedding_hnsw; DROP INDEX memories_unembedded")
        await conn.execute(CENTRES)
        started = time.perf_counter()
        await load(conn, owner, "big", rows)
        await load(conn, owner, "small", small)
        facts["load_seconds"] = time.perf_counter() - started
        await conn.execute("SET maintenance_work_mem = '4GB'")
        started = time.perf_counter()
        await conn.execute("CREATE INDEX memories_embedding_hnsw ON memories USING hnsw (embedding vector_cosine_ops)")
        facts["index_build_seconds"] = time.perf_counter() - started
        await conn.execute(
            "CREATE INDEX memories_unembedded ON memories (created_at, memory_id) WHERE embedding IS NULL"
        )
        await conn.execute("VACUUM ANALYZE memories")
        facts["table_mb"] = await conn.fetchval("SELECT pg_table_size('memories') / 1e6")
        facts["hnsw_mb"] = await conn.fetchval("SELECT pg_relation_size('memories_embedding_hnsw') / 1e6")
        return owner, facts
    finally:
        await conn.close()


def percentile(values: list[float], p: float) -> float:
    return float(np.percentile(values, p))


async def measure(owner: str, queries: list[np.ndarray], ef_searches: list[int]) -> None:
    settings = Settings(database_url=database_url(DB_NAME), secret_key="x" * 48, embedder="none", db_pool_max=1)
    pool = await open_pool(msgspec.structs.replace(settings, db_statement_timeout=600))
    knn = EmbeddingRepository(Database(pool, 30))
    cases = {
        "no filter": MemoryFilters(),
        "type = goal": MemoryFilters(types=("goal",)),
        "tag 'tagged'": MemoryFilters(tags=("tagged",)),
    }
    try:
        for agent in ("big", "small"):
            print(f"\nagent {agent}: plan (no filter)")
            print("  " + (await knn.explain_nearest(owner, agent, queries[0], model_id=MODEL)).replace("\n", "\n  "))
            for ef in ef_searches if agent == "big" else ef_searches[:1]:
                await pool.execute(f"SET hnsw.ef_search = {int(ef)}")  # one connection: it stays set
                print(f"  hnsw.ef_search = {ef}" if agent == "big" else "  (exact: hnsw.ef_search plays no part)")
                for name, filters in cases.items():
                    await knn.nearest(owner, agent, queries[0], model_id=MODEL, filters=filters)  # warm
                    times, counts = [], []
                    for query in queries:
                        started = time.perf_counter()
                        rows = await knn.nearest(owner, agent, query, model_id=MODEL, filters=filters, limit=10)
                        times.append((time.perf_counter() - started) * 1000)
                        counts.append(len(rows))
                    print(
                        f"    {name:<13} p50 {percentile(times, 50):7.2f} ms  p95 {percentile(times, 95):7.2f} ms"
                        f"  rows {min(counts)}-{max(counts)}"
                    )
                if agent == "big":
                    await recall_at_10(pool, knn, owner, queries[:10])
    finally:
        await pool.close()


async def recall_at_10(pool: asyncpg.Pool[Any], knn: EmbeddingRepository, owner: str, queries: list[Any]) -> None:
    hits = []
    for query in queries:
        found = {r.memory_id for r in await knn.nearest(owner, "big", query, model_id=MODEL, limit=10)}
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SET LOCAL enable_indexscan = off; SET LOCAL enable_bitmapscan = off")
            exact = await conn.fetch(
                "SELECT memory_id::text FROM memories WHERE owner_id = $1::uuid AND agent_id = 'big' "
                "ORDER BY embedding <=> $2::real[]::vector LIMIT 10",
                owner,
                query.tolist(),
            )
        hits.append(len(found & {r[0] for r in exact}) / 10)
    print(f"    recall@10 against exact distances ({len(queries)} queries): {statistics.mean(hits):.2f}")


async def query_vectors(count: int) -> list[np.ndarray]:
    """Queries near the topics (a centre plus other noise), as real questions are near memories."""
    conn = await asyncpg.connect(database_url(DB_NAME))
    try:
        centres = [np.array(r[0], dtype=np.float32) for r in await conn.fetch("SELECT centre FROM bench_centres")]
    finally:
        await conn.close()
    rng = np.random.default_rng(3)
    return [centres[i % len(centres)] + rng.uniform(-0.5, 0.5, DIMENSION).astype(np.float32) for i in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--ef-search", default="40,100", help="hnsw.ef_search values to measure (comma-separated)")
    parser.add_argument("--keep", action="store_true", help="keep the database (drop it by hand)")
    args = parser.parse_args()
    print(f"loading {args.rows:,} + {args.small:,} memories with {DIMENSION}-dimension clustered random embeddings")
    owner, facts = asyncio.run(prepare(args.rows, args.small))
    queries = asyncio.run(query_vectors(args.queries))
    for name, value in facts.items():
        print(f"  {name}: {value:,.1f}")
    try:
        asyncio.run(measure(owner, queries, [int(v) for v in args.ef_search.split(",")]))
    finally:
        if not args.keep:
            asyncio.run(drop_database(DB_NAME))


if __name__ == "__main__":
    main()
