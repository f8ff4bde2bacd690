"""KNN for recall (`EmbeddingRepository.nearest`): isolation, every recall filter, the plans it runs on.

Each test has a database of its own (the recorded model is one per database), with embeddings
written directly, so distances are known exactly.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
import numpy as np
import pytest

from memanto_server.embeddings.repository import EmbeddingRepository
from memanto_server.lib.db import Database
from memanto_server.lifespan import open_pool
from memanto_server.memories.schemas import MemoryFilters
from memanto_server.settings import Settings
from tests.helpers.embeddings import insert_memory, near, record_model, unit

MODEL = "test-model"
QUERY = unit(1)


@pytest.fixture
async def conn(fresh_database_url: str) -> AsyncIterator[asyncpg.Connection[Any]]:
    connection = await asyncpg.connect(fresh_database_url)
    await record_model(connection, MODEL)
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
async def knn(settings: Settings, fresh_database_url: str) -> AsyncIterator[EmbeddingRepository]:
    """The repository on the app's own kind of pool (its planner settings included)."""
    pool = await open_pool(msgspec.structs.replace(settings, database_url=fresh_database_url))
    try:
        yield EmbeddingRepository(Database(pool, 5))
    finally:
        await pool.close()


async def owners(conn: asyncpg.Connection[Any], count: int) -> list[str]:
    insert = "INSERT INTO owners (name) VALUES ('knn') RETURNING owner_id::text"
    return [await conn.fetchval(insert) for _ in range(count)]


async def test_nearest_first_with_cosine_similarity_and_no_unembedded_rows(
    conn: asyncpg.Connection[Any], knn: EmbeddingRepository
) -> None:
    (owner,) = await owners(conn, 1)
    ids = {}
    for closeness in (0.9, 0.5, 0.7, -0.3):
        ids[closeness] = str(await insert_memory(conn, owner, "a", f"at {closeness}", near(QUERY, closeness, 7)))
    await insert_memory(conn, owner, "a", "not embedded yet")  # full text finds it; KNN does not

    rows = await knn.nearest(owner, "a", QUERY, model_id=MODEL, limit=10)

    assert [r.memory_id for r in rows] == [ids[0.9], ids[0.7], ids[0.5], ids[-0.3]]
    assert [round(r.score, 4) for r in rows] == [0.9, 0.7, 0.5, -0.3]
    assert (rows[0].content, rows[0].agent_id, rows[0].type) == ("at 0.9", "a", "fact")
    assert [r.memory_id for r in await knn.nearest(owner, "a", QUERY, model_id=MODEL, limit=2)] == [
        ids[0.9],
        ids[0.7],
    ]


async def test_owners_and_agents_never_see_each_others_memories(
    conn: asyncpg.Connection[Any], knn: EmbeddingRepository
) -> None:
    first, second = await owners(conn, 2)
    mine = await insert_memory(conn, first, "shared-name", "mine", near(QUERY, 0.2, 1))
    # Nearer to the query, but another owner's agent of the same name, and another agent of mine.
    await insert_memory(conn, second, "shared-name", "theirs", near(QUERY, 0.99, 2))
    await insert_memory(conn, first, "other-agent", "my other agent's", near(QUERY, 0.98, 3))

    rows = await knn.nearest(first, "shared-name", QUERY, model_id=MODEL, limit=10)
    assert [r.memory_id for r in rows] == [str(mine)]
    assert [r.content for r in await knn.nearest(second, "shared-name", QUERY, model_id=MODEL)] == ["theirs"]
    assert await knn.nearest(second, "other-agent", QUERY, model_id=MODEL) == []


async def test_every_recall_filter_applies(conn: asyncpg.Connection[Any], knn: EmbeddingRepository) -> None:
    (owner,) = await owners(conn, 1)
    now = datetime.now(UTC)
    rows = [
        ("old fact", "fact", ["x", "y"], now - timedelta(days=10), 0.95),
        ("new fact", "fact", ["x"], now - timedelta(days=1), 0.9),
        ("new goal", "goal", ["x", "y"], now - timedelta(days=1), 0.85),
        ("newest decision", "decision", ["y"], now, 0.8),
    ]
    for content, kind, tags, created, closeness in rows:
        await insert_memory(
            conn, owner, "a", content, near(QUERY, closeness, len(content)), type=kind, tags=tags, created_at=created
        )

    async def contents(**filters: Any) -> list[str]:
        found = await knn.nearest(owner, "a", QUERY, model_id=MODEL, filters=MemoryFilters(**filters), limit=10)
        return [r.content for r in found]

    assert await contents() == ["old fact", "new fact", "new goal", "newest decision"]
    assert await contents(types=("fact",)) == ["old fact", "new fact"]
    assert await contents(types=("goal", "decision")) == ["new goal", "newest decision"]
    assert await contents(tags=("x", "y")) == ["old fact", "new goal"]  # all tags must match
    assert await contents(tags=("y",)) == ["old fact", "new goal", "newest decision"]
    assert await contents(created_after=now - timedelta(days=2)) == ["new fact", "new goal", "newest decision"]
    assert await contents(created_before=now - timedelta(hours=1)) == ["old fact", "new fact", "new goal"]
    assert await contents(types=("fact", "goal"), tags=("x",), created_after=now - timedelta(days=2)) == [
        "new fact",
        "new goal",
    ]
    assert await contents(types=("error",)) == []


async def test_a_query_of_another_model_finds_nothing(conn: asyncpg.Connection[Any], knn: EmbeddingRepository) -> None:
    (owner,) = await owners(conn, 1)
    await insert_memory(conn, owner, "a", "embedded by test-model", near(QUERY, 0.9, 1))
    assert len(await knn.nearest(owner, "a", QUERY, model_id=MODEL)) == 1
    # Vectors of two models are not comparable: after `reembed` began, an old process's query finds nothing.
    assert await knn.nearest(owner, "a", QUERY, model_id="another-model") == []


async def large_and_small_agent(conn: asyncpg.Connection[Any], owner: str, large: int) -> dict[float, str]:
    """`large` memories of agent 'large', all nearer to the query (0.8 to 0.9) than any of the
    five of agent 'small' (0.6 to 0.2, alternately facts and goals); the small ones' ids."""
    await conn.execute("INSERT INTO agents (owner_id, agent_id) VALUES ($1::uuid, 'large')", owner)
    rng = np.random.default_rng(5)
    vectors = [near(QUERY, float(rng.uniform(0.8, 0.9)), 10_000 + i).tolist() for i in range(large)]
    await conn.execute(
        """
        INSERT INTO memories (owner_id, agent_id, session_id, type, content, embedding)
        SELECT $1::uuid, 'large', 's', 'fact', 'large', v.e::vector
        FROM unnest($2::text[]) AS v(e)
        """,
        owner,
        [str(v) for v in vectors],
    )
    small = {}
    for i, closeness in enumerate((0.6, 0.5, 0.4, 0.3, 0.2)):
        kind = "goal" if i % 2 else "fact"
        small[closeness] = str(
            await insert_memory(conn, owner, "small", f"small {closeness}", near(QUERY, closeness, 100 + i), type=kind)
        )
    await conn.execute("ANALYZE memories")
    return small


async def test_the_vector_index_scans_past_other_agents_memories(
    conn: asyncpg.Connection[Any], fresh_database_url: str, settings: Settings
) -> None:
    """The HNSW plan (forced here: every agent counts as large, and no sorting is allowed) scans
    on past other agents' and filtered-out rows (iterative scan) until it has the agent's nearest,
    in order."""
    (owner,) = await owners(conn, 1)
    small = await large_and_small_agent(conn, owner, 1500)

    pool = await open_pool(msgspec.structs.replace(settings, database_url=fresh_database_url))
    try:
        async with pool.acquire() as c:
            await c.execute("SET enable_sort = off; SET enable_seqscan = off")
            repository = EmbeddingRepository(_OneConnection(Database(pool, 5), c), exact_up_to=1)
            plan = await repository.explain_nearest(owner, "small", QUERY, model_id=MODEL, limit=3)
            assert "memories_embedding_hnsw" in plan, plan
            found = await repository.nearest(owner, "small", QUERY, model_id=MODEL, limit=3)
            assert [r.memory_id for r in found] == [small[0.6], small[0.5], small[0.4]]
            goals = await repository.nearest(
                owner, "small", QUERY, model_id=MODEL, filters=MemoryFilters(types=("goal",)), limit=3
            )
            assert [r.memory_id for r in goals] == [small[0.5], small[0.3]]
            # A walk of the graph returns at most graph_up_to rows; an exact search is not cut short.
            db = _OneConnection(Database(pool, 5), c)
            walked = await EmbeddingRepository(db, exact_up_to=1, graph_up_to=2).nearest(
                owner, "small", QUERY, model_id=MODEL, limit=3
            )
            assert [r.memory_id for r in walked] == [small[0.6], small[0.5]]
            exact = await EmbeddingRepository(db, graph_up_to=2).nearest(owner, "small", QUERY, model_id=MODEL, limit=3)
            assert [r.memory_id for r in exact] == [small[0.6], small[0.5], small[0.4]]
            # An agent known to be large (memories/sizes.py) is not counted: it walks the graph.
            known = await EmbeddingRepository(db, graph_up_to=2).nearest(
                owner, "small", QUERY, model_id=MODEL, limit=3, known_large=True
            )
            assert [r.memory_id for r in known] == [small[0.6], small[0.5]]
    finally:
        await pool.close()


async def test_a_small_agent_is_searched_exactly_by_its_own_index(
    conn: asyncpg.Connection[Any], knn: EmbeddingRepository
) -> None:
    """An agent with fewer than EXACT_UP_TO memories: every distance of its own memories, read
    by its (owner, agent) index, never a walk through the graph of everyone's."""
    (owner,) = await owners(conn, 1)
    small = await large_and_small_agent(conn, owner, 1500)
    plan = await knn.explain_nearest(owner, "small", QUERY, model_id=MODEL, limit=3)
    exact_branch = plan.split("CTE graph")[0]
    # Every read of memories goes through an index that starts with (owner_id, agent_id).
    scans = re.findall(r"Scan using (\w+) on memories", exact_branch)
    assert scans, plan
    assert set(scans) <= {"memories_agent_created", "memories_agent_updated"}, plan
    assert "Seq Scan on memories" not in exact_branch, plan
    found = await knn.nearest(owner, "small", QUERY, model_id=MODEL, limit=3)
    assert [r.memory_id for r in found] == [small[0.6], small[0.5], small[0.4]]
    goals = await knn.nearest(owner, "small", QUERY, model_id=MODEL, filters=MemoryFilters(types=("goal",)))
    assert [r.memory_id for r in goals] == [small[0.5], small[0.3]]


class _OneConnection(Database):
    """A Database whose statements run on one given connection (its session settings apply)."""

    def __init__(self, db: Database, conn: asyncpg.Connection[Any]) -> None:
        super().__init__(db.pool, db.acquire_timeout)
        self._conn = conn

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        return await self._conn.fetch(query, *args)
