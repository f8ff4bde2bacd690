"""Recall's text search keeps one plan per connection (recall_text_candidates(), migration
0015), and that plan reads by index whatever the agent's size: it is made once, for any agent,
so it must not be a plan that suits only an agent the size the planner guesses."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from memanto_server.memories.repository import POPULATION_UP_TO, SEARCH_TEXT


async def explained(conn: asyncpg.Connection[Any]) -> list[str]:
    """The plans of every statement `conn` runs from now on, nested ones included (auto_explain),
    collected as they are logged."""
    plans: list[str] = []
    conn.add_log_listener(lambda _conn, message: plans.append(message.message))
    await conn.execute("LOAD 'auto_explain'")
    await conn.execute(
        "SET auto_explain.log_min_duration = 0; SET auto_explain.log_nested_statements = on;"
        "SET auto_explain.log_level = notice; SET client_min_messages = notice"
    )
    return plans


async def test_the_text_search_is_planned_once_and_reads_by_index(fresh_db: asyncpg.Connection[Any]) -> None:
    owner = uuid.uuid4()
    await fresh_db.execute("INSERT INTO owners (owner_id, name) VALUES ($1, 'plans')", owner)
    await fresh_db.execute("INSERT INTO agents (owner_id, agent_id) VALUES ($1, 'big'), ($1, 'small')", owner)
    # Two agents of one owner, one of them most of the table: the planner's estimate for "an
    # agent" (half of the table) is far from the small agent's size.
    await fresh_db.execute(
        """INSERT INTO memories (owner_id, agent_id, session_id, type, content)
           SELECT $1, CASE WHEN g <= 30 THEN 'small' ELSE 'big' END, 's', 'fact',
                  'Customer asked about billing email, note ' || g
           FROM generate_series(1, 3000) AS g""",
        owner,
    )
    await fresh_db.execute("ANALYZE memories")
    plans = await explained(fresh_db)
    args = (
        owner,
        "small",
        ["billing", "email"],
        ["word", "word"],
        "",
        None,
        None,
        None,
        None,
        100,
        False,
        POPULATION_UP_TO,
        False,
    )
    for _ in range(8):  # past the 5 custom plans a prepared statement gets before a generic one is weighed
        rows = await fresh_db.fetch(SEARCH_TEXT, *args)
        assert len(rows) == 30
        assert rows[0]["frequencies"] == [30, 30]
        assert rows[0]["population"] == 30
    searches = [plan for plan in plans if "AS held" in plan]
    assert len(searches) == 8
    last = searches[-1]
    assert str(owner) not in last.split("Query Text:")[-1].split("\n", 1)[-1]  # a generic plan: no values in it
    assert "Seq Scan on memories" not in last
    assert "Index Scan using memories_pkey" in last  # the memories found, by primary key


async def test_a_common_word_is_found_by_walking_the_agents_newest_memories(fresh_db: asyncpg.Connection[Any]) -> None:
    # The condition that leaves expired memories out was once opaque to the planner, which
    # guessed it kept half of the rows: a word that every memory holds was then found by reading
    # them all and sorting, not by reading the newest `depth` along the agent's index.
    owner = uuid.uuid4()
    await fresh_db.execute("INSERT INTO owners (owner_id, name) VALUES ($1, 'plans')", owner)
    await fresh_db.execute("INSERT INTO agents (owner_id, agent_id) VALUES ($1, 'notes')", owner)
    await fresh_db.execute(
        """INSERT INTO memories (owner_id, agent_id, session_id, type, content)
           SELECT $1, 'notes', 's', 'fact', 'Note ' || g || ': the customer asked about billing'
           FROM generate_series(1, 300) AS g""",
        owner,
    )
    await fresh_db.execute("UPDATE memories SET expired_at = now() - interval '1 day' WHERE content LIKE 'Note 1:%'")
    await fresh_db.execute("ANALYZE memories")
    plans = await explained(fresh_db)
    rows = await fresh_db.fetch(
        SEARCH_TEXT, owner, "notes", ["note"], ["word"], "", None, None, None, None, 100, False, POPULATION_UP_TO, False
    )
    assert len(rows) == 100
    assert rows[0]["population"] == 300
    holding = [plan for plan in plans if "ORDER BY m.created_at DESC, m.memory_id DESC LIMIT $11" in plan]
    assert len(holding) == 1
    assert "Index Scan using memories_agent_created" in holding[0]
    assert "Sort" not in holding[0].split("Query Parameters:")[-1]
    # Expired memories are still left out, and found when asked for.
    no_filter = (None, None, None, None, 400)
    everything = await fresh_db.fetch(
        SEARCH_TEXT, owner, "notes", ["note"], ["word"], "", *no_filter, True, POPULATION_UP_TO, False
    )
    assert len(everything) == 300
    live = await fresh_db.fetch(
        SEARCH_TEXT, owner, "notes", ["note"], ["word"], "", *no_filter, False, POPULATION_UP_TO, False
    )
    assert len(live) == 299
