"""How the HNSW graph's build parameter `ef_construction` trades against `hnsw.ef_search`.

    python -m bench.hnsw_params [--rows 200000] [--ef-construction 64,200] [--ef-search 40,60,100]

A database of its own (`memanto_bench_hnsw`, on MEMANTO_BENCH_POSTGRES_URL or a Postgres of the
run's own) with one table of `--rows` 384-dimension unit vectors clustered round 1,000 random
topics (as bench.knn_scale's, and as real embeddings cluster), and 100 query vectors drawn the
same way. For each `ef_construction` the index is built anew (the build time printed), and for
each `ef_search` the 100 queries ask for 40 nearest (what a large agent's recall asks the graph
for, GRAPH_UP_TO): p50 latency, and recall@10, the share of the exact 10 nearest (a sequential
scan) among the 40 returned. pgvector alone: no memories table, no filter, one connection.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import asyncpg
import numpy as np

from bench.common import drop_database, pg_server_url

DB_NAME = "memanto_bench_hnsw"
DIMENSION = 384
TOPICS = 1_000
SPREAD = 0.6  # noise round each topic, per dimension, before normalising
QUERIES = 100
ASKED = 40  # embeddings/repository.py GRAPH_UP_TO


def clustered(rng: np.random.Generator, centroids: np.ndarray, count: int) -> list[str]:
    vectors = centroids[rng.integers(0, TOPICS, count)] + rng.normal(scale=SPREAD, size=(count, DIMENSION))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return ["[" + ",".join(f"{x:.5f}" for x in vector) + "]" for vector in vectors]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--ef-construction", default="64,200", help="values to build with (comma-separated)")
    parser.add_argument("--ef-search", default="40,60,100", help="values to search with (comma-separated)")
    args = parser.parse_args()

    admin = await asyncpg.connect(f"{pg_server_url()}/postgres")
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{DB_NAME}"')
    finally:
        await admin.close()
    conn = await asyncpg.connect(f"{pg_server_url()}/{DB_NAME}")
    try:
        await conn.execute("CREATE EXTENSION vector; CREATE TABLE vectors (id int PRIMARY KEY, embedding vector(384))")
        rng = np.random.default_rng(7)
        centroids = rng.normal(size=(TOPICS, DIMENSION))
        started = time.perf_counter()
        for start in range(0, args.rows, 20_000):
            batch = clustered(rng, centroids, min(20_000, args.rows - start))
            await conn.executemany(
                "INSERT INTO vectors VALUES ($1, $2::text::vector)", [(start + i, v) for i, v in enumerate(batch)]
            )
        print(f"{args.rows:,} vectors loaded in {time.perf_counter() - started:.0f} s")
        queries = clustered(rng, centroids, QUERIES)
        await conn.execute("SET max_parallel_workers_per_gather = 0")
        exact = [
            {
                r[0]
                for r in await conn.fetch("SELECT id FROM vectors ORDER BY embedding <=> $1::text::vector LIMIT 10", q)
            }
            for q in queries
        ]
        await conn.execute("SET maintenance_work_mem = '2GB'; SET max_parallel_maintenance_workers = 1")
        for ef_construction in (int(v) for v in args.ef_construction.split(",")):
            await conn.execute("DROP INDEX IF EXISTS vectors_hnsw")
            started = time.perf_counter()
            await conn.execute(
                "CREATE INDEX vectors_hnsw ON vectors USING hnsw (embedding vector_cosine_ops)"
                f" WITH (ef_construction = {ef_construction})"
            )
            print(f"ef_construction {ef_construction}: built in {time.perf_counter() - started:.0f} s")
            for ef_search in (int(v) for v in args.ef_search.split(",")):
                await conn.execute(f"SET hnsw.ef_search = {ef_search}")
                for _ in range(2):  # the first pass warms the index's pages
                    latencies, found = [], 0
                    for query, nearest in zip(queries, exact, strict=True):
                        began = time.perf_counter()
                        rows = await conn.fetch(
                            f"SELECT id FROM vectors ORDER BY embedding <=> $1::text::vector LIMIT {ASKED}", query
                        )
                        latencies.append((time.perf_counter() - began) * 1000)
                        found += len(nearest & {r[0] for r in rows})
                print(
                    f"  ef_search {ef_search}: p50 {statistics.median(latencies):.2f} ms, "
                    f"recall@10 {found / (10 * QUERIES):.3f}"
                )
    finally:
        await conn.close()
        await drop_database(DB_NAME)


if __name__ == "__main__":
    asyncio.run(main())
