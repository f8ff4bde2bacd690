"""`remember` inserts of concurrent requests, stored together (MemoryRepository.insert, INSERT_GROUP).

Calls made at once go to Postgres as one statement and one commit; each caller must still
get exactly its own memory, the idempotency rules must hold between the rows of one
statement, and a row that cannot be stored must fail alone.
"""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import asyncpg
import msgspec

from memanto_server.errors import OUTAGE_ERRORS
from memanto_server.lib.db import Database
from memanto_server.lifespan import open_pool
from memanto_server.memories.repository import REMEMBER_GROUP, MemoryRepository, Stored
from memanto_server.memories.schemas import RememberRequest
from memanto_server.settings import Settings
from tests.helpers.owners import OwnerKey, unique_agent

CALLS = 40


async def new_agent(db: asyncpg.Connection[Any], owner: OwnerKey) -> str:
    agent_id = unique_agent("grouped")
    await db.execute("INSERT INTO agents (owner_id, agent_id) VALUES ($1, $2)", uuid.UUID(owner.owner_id), agent_id)
    return agent_id


def memory(i: int, **fields: Any) -> RememberRequest:
    return RememberRequest(content=f"note number {i}", tags=[f"t{i % 3}", "grouped"], title=f"n{i}", **fields)


async def test_concurrent_inserts_share_one_statement_and_each_caller_gets_its_own_memory(
    repository: MemoryRepository, db: asyncpg.Connection[Any], owner: OwnerKey
) -> None:
    agents = [await new_agent(db, owner) for _ in range(3)]  # rows of several agents in one statement
    calls = [
        repository.insert(owner.owner_id, agents[i % 3], f"sess_grouped{i:04d}", memory(i, metadata={"i": i}), None)
        for i in range(CALLS)
    ]
    stored: list[Stored] = await asyncio.gather(*calls)

    rows = {
        str(r["memory_id"]): r
        for r in await db.fetch(
            "SELECT memory_id, agent_id, session_id, content, tags, title, metadata, created_at FROM memories "
            "WHERE owner_id = $1 AND agent_id = ANY($2::text[])",
            uuid.UUID(owner.owner_id),
            agents,
        )
    }
    assert len(rows) == CALLS
    for i, result in enumerate(stored):
        row = rows[result.memory_id]
        assert not result.replayed
        assert (row["agent_id"], row["session_id"], row["content"]) == (
            agents[i % 3],
            result.session_id,
            f"note number {i}",
        )
        assert (row["tags"], row["title"], json.loads(row["metadata"])) == ([f"t{i % 3}", "grouped"], f"n{i}", {"i": i})
        assert row["created_at"] == result.created_at
    # One statement, one transaction, of at most REMEMBER_GROUP rows: its rows share its
    # timestamp. The 40 calls of one loop turn go as full statements and the rest, one after the other.
    per_statement = Counter(row["created_at"] for row in rows.values())
    full, rest = divmod(CALLS, REMEMBER_GROUP)
    assert sorted(per_statement.values(), reverse=True) == [REMEMBER_GROUP] * full + ([rest] if rest else [])


async def test_every_field_of_a_grouped_row_is_stored_as_given(
    repository: MemoryRepository, db: asyncpg.Connection[Any], owner: OwnerKey
) -> None:
    # The rows of a group travel as one JSON text: text that JSON escapes, nested metadata,
    # times with offsets and absent fields must come out as a lone insert stores them.
    agent_id = await new_agent(db, owner)
    hard = 'quote " backslash \\ newline \n tab \t Ünïcode 中文 हिन्दी 🙂 {"json": [1]}'
    occurred = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    until = datetime(2027, 1, 1, tzinfo=UTC)
    given = [
        RememberRequest(
            content=f"{hard} {i}",
            type="decision",
            title=hard if i % 2 else None,
            tags=[hard, "a,b", "{c}", "NULL"] if i % 2 else [],
            confidence=0.25,
            source="unit test" if i % 2 else None,
            metadata={"nested": {"list": [1, 2.5, None, hard]}, "flag": True} if i % 2 else None,
            occurred_at=occurred if i % 2 else None,
            valid_until=until if i % 2 else None,
        )
        for i in range(6)
    ]
    stored = await asyncio.gather(
        *(repository.insert(owner.owner_id, agent_id, "sess_grouped0004", m, None) for m in given)
    )
    assert len({s.created_at for s in stored}) == 1  # one statement
    rows = {
        str(r["memory_id"]): r
        for r in await db.fetch(
            "SELECT memory_id, type, title, content, tags, confidence, source, metadata, occurred_at, valid_until, "
            "created_at FROM memories WHERE owner_id = $1 AND agent_id = $2",
            uuid.UUID(owner.owner_id),
            agent_id,
        )
    }
    for memory_given, result in zip(given, stored, strict=True):
        row = rows[result.memory_id]
        assert (row["type"], row["title"], row["content"], row["tags"], row["source"]) == (
            "decision",
            memory_given.title,
            memory_given.content,
            memory_given.tags,
            memory_given.source,
        )
        assert row["confidence"] == 0.25
        assert (json.loads(row["metadata"]) if row["metadata"] else None) == memory_given.metadata
        assert row["occurred_at"] == (memory_given.occurred_at or row["created_at"])
        assert row["valid_until"] == memory_given.valid_until


async def test_idempotency_keys_hold_between_the_rows_of_one_statement(
    repository: MemoryRepository, db: asyncpg.Connection[Any], owner: OwnerKey
) -> None:
    agent_id = await new_agent(db, owner)
    keys = [f"key-{i % 5}" for i in range(CALLS)]  # each key eight times, twice in some statements
    stored = await asyncio.gather(
        *(repository.insert(owner.owner_id, agent_id, "sess_grouped0001", memory(i), key) for i, key in enumerate(keys))
    )
    by_key: dict[str, set[str]] = {}
    for key, result in zip(keys, stored, strict=True):
        by_key.setdefault(key, set()).add(result.memory_id)
    assert all(len(ids) == 1 for ids in by_key.values()), by_key
    assert sum(not result.replayed for result in stored) == 5
    count = await db.fetchval(
        "SELECT count(*) FROM memories WHERE owner_id = $1 AND agent_id = $2", uuid.UUID(owner.owner_id), agent_id
    )
    assert count == 5


async def test_a_row_that_cannot_be_stored_fails_alone(
    repository: MemoryRepository, db: asyncpg.Connection[Any], owner: OwnerKey
) -> None:
    agent_id = await new_agent(db, owner)
    missing = unique_agent("never-created")  # the agent of a session whose agent was deleted meanwhile
    agents = [missing if i == 7 else agent_id for i in range(CALLS)]
    outcomes = await asyncio.gather(
        *(repository.insert(owner.owner_id, a, "sess_grouped0002", memory(i), None) for i, a in enumerate(agents)),
        return_exceptions=True,
    )
    assert isinstance(outcomes[7], asyncpg.ForeignKeyViolationError)
    assert all(isinstance(o, Stored) for i, o in enumerate(outcomes) if i != 7), outcomes
    count = await db.fetchval(
        "SELECT count(*) FROM memories WHERE owner_id = $1 AND agent_id = $2", uuid.UUID(owner.owner_id), agent_id
    )
    assert count == CALLS - 1


async def test_postgres_down_fails_every_insert_of_the_group_as_an_outage(settings: Settings) -> None:
    # A server that does not answer: every caller of the group gets the outage (a 503
    # upstream), none is left waiting, and none is retried row by row.
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
    down = msgspec.structs.replace(settings, database_url=f"postgresql://postgres@127.0.0.1:{port}/nothing")
    pool = await open_pool(down)
    try:
        repository = MemoryRepository(Database(pool, 2))
        owner_id = str(uuid.uuid4())
        outcomes = await asyncio.wait_for(
            asyncio.gather(
                *(repository.insert(owner_id, "any-agent", "sess_grouped0003", memory(i), None) for i in range(10)),
                return_exceptions=True,
            ),
            timeout=30,
        )
    finally:
        await pool.close()
    assert all(isinstance(outcome, OUTAGE_ERRORS) for outcome in outcomes), outcomes
