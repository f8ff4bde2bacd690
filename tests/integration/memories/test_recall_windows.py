"""A large agent's text candidates are read by window of time (migration 0016): each term's
newest holders, the same rows as reading every holder, found without reading them all."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from memanto_server.lib.migrations import migrate
from memanto_server.memories.repository import POPULATION_UP_TO, SEARCH_TEXT
from tests.fixtures.backends import drop_database
from tests.helpers.backends import RUN_ID
from tests.integration.memories.test_recall_plan import explained

MEMORIES = 12_000  # above POPULATION_UP_TO: the agent is read by window
NOW = datetime(2026, 6, 1, tzinfo=UTC)

# memories_holding(owner, agent, query, gram, types, tags, after, before, excluded, include_expired,
# depth, by_window): the term's newest holders, newest first.
HOLDING = """
SELECT h.memory_id FROM memories_holding($1, $2, plainto_tsquery('english', $3), $4, $5::text[], $6::text[],
                                         $7::timestamptz, $8::timestamptz,
                                         NULLIF(websearch_to_tsquery('english', $9), ''::tsquery), $10, $11, $12) AS h
"""


async def seed(conn: asyncpg.Connection[Any]) -> uuid.UUID:
    """One agent of MEMORIES memories, one a minute up to NOW, holding words as often as a
    common word (every 3rd: invoice), less common ones (every 7th: refund; every 150th:
    escalation), a rare one (7 of them, all old: chargeback), one common lately and rare before
    (surge) and a Chinese one (every 50th); two expired, and a second agent holding every word."""
    owner = uuid.uuid4()
    await conn.execute("INSERT INTO owners (owner_id, name) VALUES ($1, 'windows')", owner)
    await conn.execute("INSERT INTO agents (owner_id, agent_id) VALUES ($1, 'large'), ($1, 'other')", owner)
    await conn.execute(
        """INSERT INTO memories (owner_id, agent_id, session_id, type, content, created_at, expired_at)
           SELECT $1, 'large', 's', CASE WHEN g % 2 = 0 THEN 'fact' ELSE 'event' END,
                  concat_ws(' ', 'Entry', g::text,
                            CASE WHEN g % 3 = 0 THEN 'invoice' END,
                            CASE WHEN g % 150 = 0 THEN 'escalation' END,
                            CASE WHEN g IN (11, 900, 1500, 2000, 2001, 2002, 4000) THEN 'chargeback' END,
                            CASE WHEN g % 50 = 0 THEN '客户投诉' END,
                            CASE WHEN g % 7 = 0 THEN 'refund' END,
                            CASE WHEN (g > 11800 AND g % 10 = 0) OR g % 500 = 0 THEN 'surge' END),
                  $2::timestamptz - (($3 - g) * interval '1 minute'),
                  CASE WHEN g % 4500 = 0 THEN $2::timestamptz - interval '1 day' END
           FROM generate_series(1, $3) AS g""",
        owner,
        NOW,
        MEMORIES,
    )
    await conn.execute(
        """INSERT INTO memories (owner_id, agent_id, session_id, type, content, created_at)
           SELECT $1, 'other', 's', 'fact', 'invoice escalation chargeback 客户投诉 ' || g, $2
           FROM generate_series(1, 200) AS g""",
        owner,
        NOW,
    )
    await conn.execute("ANALYZE memories")
    return owner


@pytest.fixture(scope="module")
def large_agent_database(postgres_server_url: str) -> Iterator[tuple[str, uuid.UUID]]:
    """A database of this module's own, seeded once (the tests only read it): its URL and owner."""
    name = f"memanto_test_{RUN_ID}_recall_windows"
    url = f"{postgres_server_url}/{name}"

    async def create() -> uuid.UUID:
        await migrate(url)
        conn = await asyncpg.connect(url)
        try:
            return await seed(conn)
        finally:
            await conn.close()

    owner = asyncio.run(create())
    yield url, owner
    asyncio.run(drop_database(postgres_server_url, name))


@pytest.fixture
async def fresh_db(large_agent_database: tuple[str, uuid.UUID]) -> AsyncIterator[asyncpg.Connection[Any]]:
    """A connection of the test's own to the module's database."""
    conn = await asyncpg.connect(large_agent_database[0])
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
def large_agent(large_agent_database: tuple[str, uuid.UUID]) -> uuid.UUID:
    return large_agent_database[1]


async def holders(conn: asyncpg.Connection[Any], owner: uuid.UUID, by_window: bool, **given: Any) -> list[uuid.UUID]:
    args = {
        "word": None,
        "gram": None,
        "types": None,
        "tags": None,
        "after": None,
        "before": None,
        "excluded": "",
        "include_expired": False,
        "depth": 100,
    } | given
    rows = await conn.fetch(HOLDING, owner, "large", *args.values(), by_window)
    return [r["memory_id"] for r in rows]


CASES = [
    pytest.param({"word": "invoice"}, id="common word: the newest window holds them all"),
    pytest.param({"word": "escalation"}, id="middling word: a second window sized by the first"),
    pytest.param({"word": "escalation", "depth": 30}, id="middling word, fewer wanted"),
    pytest.param({"word": "chargeback"}, id="rare word: the rest at once"),
    pytest.param({"word": "chargeback", "depth": 3}, id="rare word, fewer than it has"),
    pytest.param({"gram": "投诉"}, id="character pair"),
    pytest.param({"word": "escalation", "include_expired": True}, id="expired memories asked for"),
    pytest.param({"word": "escalation", "types": ["fact"]}, id="one type"),
    pytest.param({"word": "escalation", "excluded": "refund"}, id="a word left out"),
    pytest.param(
        {"word": "invoice", "before": NOW - timedelta(days=3), "after": NOW - timedelta(days=6)},
        id="created between two dates",
    ),
    pytest.param({"word": "escalation", "before": NOW - timedelta(days=8)}, id="created before a date"),
    pytest.param({"word": "nowhere"}, id="a word no memory holds"),
]


@pytest.mark.parametrize("given", CASES)
async def test_reading_by_window_finds_the_same_newest_holders(
    fresh_db: asyncpg.Connection[Any], large_agent: uuid.UUID, given: dict[str, Any]
) -> None:
    everything = await holders(fresh_db, large_agent, False, **given)
    windowed = await holders(fresh_db, large_agent, True, **given)
    assert windowed == everything


def statements(plans: list[str]) -> list[str]:
    """The term statements of memories_holding() that `plans` show, in order, by their window:
    `newest` (from $12 on), `sized` (from $12 to $13), `rest` (before $13), `whole` (no window)."""
    kinds = {(True, False): "newest", (True, True): "sized", (False, True): "rest", (False, False): "whole"}
    found = []
    for plan in plans:
        if "ORDER BY m.created_at DESC, m.memory_id DESC LIMIT $11" not in plan:
            continue
        parameters = plan.split("Query Parameters:")[-1]
        window = re.search(r"\$12 = (NULL|'[^']*'), \$13 = (NULL|'[^']*')", parameters)
        assert window is not None, parameters
        found.append(kinds[(window[1] != "NULL", window[2] != "NULL")])
    return found


@pytest.mark.parametrize(
    ("word", "depth", "found", "expected"),
    [
        # every 3rd memory: the newest window (187 memories) holds 62, and 50 are wanted
        ("invoice", 50, 50, ["newest"]),
        # every 7th: the newest window holds 26 of 100, the next window is sized to hold twice the
        # other 74 and does
        ("refund", 100, 100, ["newest", "sized"]),
        # every 150th: 1 in the newest window, too few to size one by: the rest at once
        ("escalation", 30, 30, ["newest", "rest"]),
        # 19 in the newest window, then 1 in 500: the sized window falls short, the rest follows
        # (41 in all: 20 lately and 23 before, 2 of them expired)
        ("surge", 100, 41, ["newest", "sized", "rest"]),
    ],
)
async def test_each_word_is_read_by_the_windows_it_needs(
    fresh_db: asyncpg.Connection[Any], large_agent: uuid.UUID, word: str, depth: int, found: int, expected: list[str]
) -> None:
    everything = await holders(fresh_db, large_agent, False, word=word, depth=depth)
    plans = await explained(fresh_db)
    assert await holders(fresh_db, large_agent, True, word=word, depth=depth) == everything
    assert len(everything) == found
    assert statements(plans) == expected


async def test_recall_reads_a_large_agent_by_window_and_a_small_one_whole(
    fresh_db: asyncpg.Connection[Any], large_agent: uuid.UUID
) -> None:
    plans = await explained(fresh_db)
    args = (["escalation"], ["word"], "", None, None, None, None, 100, False, POPULATION_UP_TO, False)
    large = await fresh_db.fetch(SEARCH_TEXT, large_agent, "large", *args)
    assert statements(plans) == ["newest", "rest"]
    assert len(large) == 78  # 80 hold the word, 2 of them expired
    assert {r["population"] for r in large} == {POPULATION_UP_TO}  # counted up to the cap
    assert large[0]["frequencies"] == [78]
    plans.clear()
    small = await fresh_db.fetch(SEARCH_TEXT, large_agent, "other", *args)
    assert statements(plans) == ["whole"]
    assert len(small) == 100
    assert small[0]["population"] == 200


async def test_an_agent_known_to_be_large_is_not_counted_again(
    fresh_db: asyncpg.Connection[Any], large_agent: uuid.UUID
) -> None:
    # memories/sizes.py remembers an agent seen with POPULATION_UP_TO memories: the search then
    # takes that for its count (and reads by window) instead of counting again. Shown on the
    # 200-memory agent, whose count would say otherwise.
    plans = await explained(fresh_db)
    args = (["escalation"], ["word"], "", None, None, None, None, 100, False, POPULATION_UP_TO)
    counted = await fresh_db.fetch(SEARCH_TEXT, large_agent, "other", *args, False)
    assert {r["population"] for r in counted} == {200}
    assert statements(plans) == ["whole"]
    plans.clear()
    trusted = await fresh_db.fetch(SEARCH_TEXT, large_agent, "other", *args, True)
    assert {r["population"] for r in trusted} == {POPULATION_UP_TO}
    # Read as a large agent would be: by window, of which there is one here (all of its
    # memories were made at one instant).
    assert statements(plans) == ["whole"]
    assert {r["memory_id"] for r in trusted} == {r["memory_id"] for r in counted}
