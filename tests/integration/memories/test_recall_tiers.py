"""Recall by rank tiers (migration 0004): the same pages as ranking every match, for less.

`MemoryRepository.search` answers a query of plain words joined by `or` from the matches
that can rank above the lowest rank plus the newest matches of the lowest rank; every other
query, and the reference here (`search(..., tiered=False)`), ranks every match. Both must
give the same memories in the same order, page after page, whatever the filters.
"""

from __future__ import annotations

import functools
import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from memanto_server.memories.repository import SEARCH_RANKED_TIERS, SEARCH_TEXT, MemoryRepository, MemoryRow, Position
from memanto_server.memories.schemas import MemoryFilters
from tests.helpers.owners import OwnerKey, unique_agent

WORDS = ["walrus", "narwhal", "puffin", "gannet", "kittiwake", "fulmar", "skua", "tern"]
FILLER = "the a of and to in is it that was for on are with as his they at be this have from".split()
TYPES = ["fact", "goal", "event", "preference"]
START = datetime(2025, 1, 1, tzinfo=UTC)


def memory_text(rng: random.Random, frequent: str | None) -> tuple[str | None, str]:
    """Content of mostly filler with some of WORDS (the first ones more often), sometimes
    repeated; now and then a title, which outranks the content."""
    words = rng.choices(FILLER, k=rng.randint(5, 14))
    for rank, word in enumerate(WORDS):
        if rng.random() < 0.5 / (rank + 1):
            for _ in range(1 if rng.random() < 0.85 else 2):
                words.insert(rng.randrange(len(words) + 1), word)
    if frequent is not None:
        words.insert(rng.randrange(len(words) + 1), frequent)
    title = f"{rng.choice(WORDS)} notes" if rng.random() < 0.1 else None
    return title, " ".join(words) + "."


async def insert_memories(
    db: asyncpg.Connection[Any], owner: OwnerKey, agent_id: str, count: int, *, seed: int, frequent: str | None = None
) -> None:
    rng = random.Random(seed)
    owner_id = uuid.UUID(owner.owner_id)
    await db.execute("INSERT INTO agents (owner_id, agent_id) VALUES ($1, $2)", owner_id, agent_id)
    rows = []
    for i in range(count):
        title, content = memory_text(rng, frequent)
        # Over ten days, in time order but for a few stragglers, some sharing a moment.
        moment = START + timedelta(minutes=15 * i + (rng.choice([0, 0, 0, -600, 5]) if i % 7 == 0 else 0))
        if i % 11 == 0 and i:
            moment = rows[-1][-1]
        rows.append(
            (
                uuid.uuid4(),
                owner_id,
                agent_id,
                "sess_tiers",
                rng.choice(TYPES),
                title,
                content,
                [f"t{rng.randint(0, 2)}"],
                moment,
            )
        )
    await db.copy_records_to_table(
        "memories",
        records=rows,
        columns=["memory_id", "owner_id", "agent_id", "session_id", "type", "title", "content", "tags", "created_at"],
    )


QUERIES = [
    "walrus",
    "narwhal",
    "tern",
    "walrus or narwhal",
    "puffin or gannet or skua",
    "walruses or walrus",  # one lexeme twice
    "the or walrus",  # a stop word drops out
    "walrus narwhal",  # every word must occur: not tiered
    '"walrus narwhal"',  # a phrase: not tiered
    "walrus -narwhal",
    "walrus or",
    "albatross",  # matches nothing
    "notes or fulmar",
]

FILTERS = [
    (MemoryFilters(), None),
    (MemoryFilters(types=("fact", "goal")), None),
    (MemoryFilters(tags=("t1",)), None),
    (MemoryFilters(created_after=START + timedelta(days=2), created_before=START + timedelta(days=7)), None),
    (MemoryFilters(), 0.29),  # above the lowest rank (0.2857): high tier only
    (MemoryFilters(), 0.2857142984867096),  # exactly the lowest rank
]


async def every_page(
    repository: MemoryRepository, search: Any, owner: OwnerKey, agent_id: str, **query: Any
) -> list[list[MemoryRow]]:
    pages: list[list[MemoryRow]] = []
    after: Position | None = None
    limit = query.pop("limit")
    for _ in range(1000):
        rows = await search(owner.owner_id, agent_id, after=after, limit=limit + 1, **query)
        pages.append(rows[:limit])
        if len(rows) <= limit:
            return pages
        last = rows[limit - 1]
        after = Position(created_at=last.created_at, memory_id=last.memory_id, score=last.score)
    raise AssertionError("never stopped paging")


def ids(pages: list[list[MemoryRow]]) -> list[list[str]]:
    return [[row.memory_id for row in page] for page in pages]


async def test_tiered_recall_pages_are_those_of_ranking_every_match(
    db: asyncpg.Connection[Any], owner: OwnerKey, repository: MemoryRepository
) -> None:
    agent_id = unique_agent("tiers")
    await insert_memories(db, owner, agent_id, 700, seed=3)
    await insert_memories(db, owner, unique_agent("other"), 200, seed=4)  # not to be seen
    matched = 0
    for text in QUERIES:
        for filters, min_score in FILTERS:
            for limit in (1, 7, 25):
                query = {"text": text, "filters": filters, "min_score": min_score, "limit": limit}
                tiered = await every_page(repository, repository.search, owner, agent_id, **dict(query))
                plain = await every_page(
                    repository, functools.partial(repository.search, tiered=False), owner, agent_id, **query
                )
                assert ids(tiered) == ids(plain), (text, filters, min_score, limit)
                assert [r.score for p in tiered for r in p] == [r.score for p in plain for r in p]
                seen = [i for page in ids(tiered) for i in page]
                assert len(seen) == len(set(seen))
                assert {r.agent_id for p in tiered for r in p} <= {agent_id}
                matched += len(seen)
    assert matched > 10_000  # the queries do match, and pages are many


def memories_ranked(plan: list[dict[str, Any]]) -> int:
    """How many memories the plan's scans of `memories` rank: those that pass the index
    conditions and meet the filter (ts_rank_cd among them), whether kept or not."""
    total = 0
    stack = [node["Plan"] for node in plan]
    while stack:
        node = stack.pop()
        if node.get("Relation Name") == "memories" and node["Node Type"] in ("Bitmap Heap Scan", "Index Scan"):
            total += (node["Actual Rows"] + node.get("Rows Removed by Filter", 0)) * node["Actual Loops"]
        stack.extend(node.get("Plans", []))
    return total


async def test_first_page_of_a_frequent_word_reads_few_of_its_matches(
    db: asyncpg.Connection[Any], owner: OwnerKey
) -> None:
    agent_id = unique_agent("frequent")
    await insert_memories(db, owner, agent_id, 3000, seed=5, frequent="shearwater")
    await db.execute("ANALYZE memories")
    await db.execute("SET plan_cache_mode = force_custom_plan")
    await db.execute("SET enable_seqscan = off")  # a table this small would be read whole either way
    args = (uuid.UUID(owner.owner_id), agent_id, "shearwater", None, None, None, None, None, None, None, None, 11)

    async def explain(sql: str, *extra: Any) -> list[dict[str, Any]]:
        plan = await db.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, *args, *extra)
        return json.loads(plan) if isinstance(plan, str) else plan  # type: ignore[no-any-return]

    # The last argument of each: include_expired (migration 0010).
    every_match = memories_ranked(await explain(SEARCH_TEXT, False))
    tiered = memories_ranked(await explain(SEARCH_RANKED_TIERS, None, False))
    assert every_match >= 3000, every_match
    assert tiered < every_match / 5, (tiered, every_match)


async def test_strong_lexemes_are_title_and_repeated_words_and_planned_once_per_connection(
    db: asyncpg.Connection[Any],
) -> None:
    document = "setweight(to_tsvector('english', 'Puffin notes'), 'A') || to_tsvector('english', $1)"
    strong = await db.fetchval(
        f"SELECT tsvector_strong_lexemes({document})::text", "a tern saw a skua, then a tern and a puffin"
    )
    assert strong == "'note' 'puffin' 'tern'"
    assert await db.fetchval(f"SELECT tsvector_strong_lexemes({document}) IS NULL", "") is False
    assert await db.fetchval("SELECT tsvector_strong_lexemes(to_tsvector('english', 'one skua')) IS NULL") is True
    # Migration 0005: a LANGUAGE sql body with a subquery is planned again in every INSERT.
    language = await db.fetchval(
        "SELECT l.lanname FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang WHERE p.proname = $1",
        "tsvector_strong_lexemes",
    )
    assert language == "plpgsql"
