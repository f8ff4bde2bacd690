"""Hybrid recall on Postgres with pgvector and the bundled local model (issue 13): a paraphrase
found by meaning, recall while memories wait for their embedding, filters and pages in hybrid
mode, isolation, knowledge updates, answers by meaning, and the modes.

Each test has a database of its own (`semantic_settings`): the app's embedding worker embeds
only its memories.
"""

# ruff: noqa: RUF001 - memories and questions in other scripts use their own punctuation

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import msgspec
import pytest
from litestar.testing import AsyncTestClient

from memanto_server.main import create_app
from memanto_server.memories.answer import ANSWER_FLOOR
from memanto_server.settings import Settings
from tests.helpers.embedders import wait_embedded
from tests.helpers.owners import OwnerKey, create_owner_key, start, unique_agent
from tests.integration.memories.test_memory_features import answer, batch, ids_of, recall, remember

CONTACT = "Customer prefers email over phone calls."
DISTRACTORS = [
    "Invoice 4411 was paid on March 3.",
    "The warehouse in Rotterdam opens at seven.",
    "Quarterly review moved to Thursday afternoon.",
    "The API quota is fifty thousand requests a day.",
    "Marco from finance pushed for the renewal.",
]
QUESTION = "How does the client want to be reached?"  # no word in common with CONTACT


@pytest.fixture
async def semantic_client(semantic_settings: Settings) -> AsyncIterator[Any]:
    async with AsyncTestClient(app=create_app(semantic_settings)) as client:
        yield client


@pytest.fixture
async def semantic_owner(semantic_settings: Settings) -> OwnerKey:
    conn = await asyncpg.connect(semantic_settings.database_url)
    try:
        return await create_owner_key(conn)
    finally:
        await conn.close()


async def test_a_paraphrase_is_found_by_meaning_and_not_by_text(
    semantic_client: Any, semantic_owner: OwnerKey, semantic_settings: Settings
) -> None:
    live = await start(semantic_client, semantic_owner)
    await batch(semantic_client, live, [{"content": c} for c in DISTRACTORS])
    contact = await remember(semantic_client, live, CONTACT)
    await wait_embedded(semantic_settings.database_url, count=6)

    text = await recall(semantic_client, live, body={"query": QUESTION, "mode": "text"})
    assert contact not in ids_of(text)
    hybrid = await recall(semantic_client, live, body={"query": QUESTION})
    assert hybrid["mode"] == "hybrid"
    assert ids_of(hybrid)[0] == contact
    assert "semantic" in hybrid["memories"][0]["signals"]
    semantic = await recall(semantic_client, live, body={"query": QUESTION, "mode": "semantic"})
    assert ids_of(semantic)[0] == contact
    assert semantic["memories"][0]["signals"] == ["semantic"]

    # A word left out (-word) leaves out the memories holding it, found by meaning too.
    excluded = await recall(semantic_client, live, body={"query": f"{QUESTION} -emails"})
    assert contact not in ids_of(excluded)

    said = await answer(semantic_client, live, QUESTION)
    assert said["answer"].startswith(CONTACT)
    assert said["sources"][0]["memory_id"] == contact


async def test_recall_finds_by_text_while_memories_wait_for_their_embedding(
    semantic_settings: Settings, semantic_owner: OwnerKey
) -> None:
    no_worker = msgspec.structs.replace(semantic_settings, embedding_worker=False)
    async with AsyncTestClient(app=create_app(no_worker)) as client:
        live = await start(client, semantic_owner)
        stored = await remember(client, live, "The gateway firmware is version 4.2.")
        found = await recall(client, live, body={"query": "gateway firmware"})
        assert ids_of(found) == [stored]
        assert found["memories"][0]["signals"] == ["text"]
        assert found["mode"] == "hybrid"
        # By meaning alone nothing is found yet: the memory has no embedding.
        assert ids_of(await recall(client, live, body={"query": "gateway firmware", "mode": "semantic"})) == []


async def test_filters_and_pages_in_hybrid_mode(
    semantic_client: Any, semantic_owner: OwnerKey, semantic_settings: Settings
) -> None:
    live = await start(semantic_client, semantic_owner)
    items = [
        {"content": f"Customer {i} prefers {'email' if i % 2 else 'phone calls'} for contact.", "type": t, "tags": g}
        for i, (t, g) in enumerate((["fact", ["a"]], ["preference", ["a", "b"]], ["fact", ["b"]]) * 8)
    ]
    ids = await batch(semantic_client, live, items)
    await batch(semantic_client, live, [{"content": c} for c in DISTRACTORS])
    await wait_embedded(semantic_settings.database_url, count=len(items) + len(DISTRACTORS))

    query = {"query": "how do customers like to be reached", "limit": 100}
    whole = await recall(semantic_client, live, body=query)
    again = await recall(semantic_client, live, body=query)
    assert [(m["memory_id"], m["score"]) for m in again["memories"]] == [
        (m["memory_id"], m["score"]) for m in whole["memories"]
    ]
    assert whole["next_cursor"] is None
    order = ids_of(whole)
    assert set(ids) <= set(order)
    seen: list[str] = []
    cursor = None
    while True:
        page = await recall(semantic_client, live, body={**query, "limit": 7, **({"cursor": cursor} if cursor else {})})
        seen += ids_of(page)
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == order  # no gap, no repeat, the same order as one page
    scores = [m["score"] for m in whole["memories"]]
    assert scores == sorted(scores, reverse=True)

    by_type = await recall(semantic_client, live, body={**query, "type": "preference"})
    assert set(ids_of(by_type)) == {ids[i] for i, item in enumerate(items) if item["type"] == "preference"}
    by_tags = await recall(semantic_client, live, body={**query, "tags": ["a", "b"]})
    assert set(ids_of(by_tags)) == {ids[i] for i, item in enumerate(items) if item["tags"] == ["a", "b"]}
    strong = await recall(semantic_client, live, body={**query, "min_score": scores[3]})
    assert ids_of(strong) == order[: len(ids_of(strong))]
    assert all(m["score"] >= scores[3] for m in strong["memories"])


async def test_hybrid_recall_never_reaches_another_agent_or_owner(
    semantic_client: Any, semantic_owner: OwnerKey, semantic_settings: Settings
) -> None:
    conn = await asyncpg.connect(semantic_settings.database_url)
    try:
        stranger = await create_owner_key(conn, "stranger")
    finally:
        await conn.close()
    agent = unique_agent()
    mine = await start(semantic_client, semantic_owner, agent)
    sibling = await start(semantic_client, semantic_owner)
    foreign = await start(semantic_client, stranger, agent)
    my_id = await remember(semantic_client, mine, CONTACT)
    await remember(semantic_client, sibling, "The customer would rather be emailed than called.")
    await remember(semantic_client, foreign, "Our client likes email, never phone calls.")
    await wait_embedded(semantic_settings.database_url, count=3)
    for mode in ("hybrid", "semantic", "text"):
        found = await recall(semantic_client, mine, body={"query": QUESTION, "mode": mode, "limit": 100})
        assert set(ids_of(found)) <= {my_id}, mode
    said = await answer(semantic_client, mine, QUESTION)
    assert [s["memory_id"] for s in said["sources"]] == [my_id]


async def test_the_later_of_two_conflicting_facts_ranks_first(
    semantic_client: Any, semantic_owner: OwnerKey, semantic_settings: Settings
) -> None:
    live = await start(semantic_client, semantic_owner)
    await batch(semantic_client, live, [{"content": c} for c in DISTRACTORS])
    old = await remember(semantic_client, live, "Northwind is on the Starter plan with 5 seats.")
    new = await remember(semantic_client, live, "Northwind upgraded to the Business plan with 25 seats.")
    await wait_embedded(semantic_settings.database_url, count=7)
    found = await recall(semantic_client, live, body={"query": "Which plan is Northwind on?"})
    assert ids_of(found)[:2] == [new, old]


async def test_a_question_nothing_answers_has_no_confident_answer(
    semantic_client: Any, semantic_owner: OwnerKey, semantic_settings: Settings
) -> None:
    live = await start(semantic_client, semantic_owner)
    await batch(semantic_client, live, [{"content": c} for c in [CONTACT, *DISTRACTORS]])
    await wait_embedded(semantic_settings.database_url, count=6)
    said = await answer(semantic_client, live, "What is the capital of Mongolia?")
    assert said["answer"] == "No stored memory answers this question."
    assert said["sources"] == []
    found = await recall(semantic_client, live, body={"query": "What is the capital of Mongolia?"})
    assert all(m["score"] < 0.3 for m in found["memories"])


async def test_semantic_mode_is_refused_when_recall_by_meaning_is_off(client: Any, owner: OwnerKey) -> None:
    live = await start(client, owner)
    response = await client.post(live.url("recall"), json={"query": "x", "mode": "semantic"}, headers=live.headers)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"].removeprefix("$.") == "mode"
    hybrid = await recall(client, live, body={"query": "x"})
    assert hybrid["mode"] == "text"  # without an embedder, hybrid is text


async def test_an_expired_memory_is_not_found_by_meaning_unless_asked_for(
    semantic_client: Any, semantic_owner: OwnerKey, semantic_settings: Settings
) -> None:
    live = await start(semantic_client, semantic_owner)
    await batch(semantic_client, live, [{"content": c} for c in DISTRACTORS])
    contact = await remember(semantic_client, live, CONTACT)
    await wait_embedded(semantic_settings.database_url, count=6)
    expired = await semantic_client.post(live.url(f"memories/{contact}/expire"), json={}, headers=live.headers)
    assert expired.status_code == 200, expired.text

    for mode in ("hybrid", "semantic"):
        found = await recall(semantic_client, live, body={"query": QUESTION, "mode": mode, "limit": 100})
        assert contact not in ids_of(found), mode
        asked = await recall(
            semantic_client, live, body={"query": QUESTION, "mode": mode, "limit": 100, "include_expired": True}
        )
        assert ids_of(asked)[0] == contact, mode
        assert asked["memories"][0]["status"] == "expired"
        assert asked["memories"][0]["occurred_at"] == asked["memories"][0]["created_at"]
    said = await answer(semantic_client, live, QUESTION)
    assert contact not in [s["memory_id"] for s in said["sources"]]
    assert CONTACT not in said["answer"]


JORDAN = [
    "Jordan takes 10 mg of lisinopril each morning.",
    "Jordan drinks four coffees a day, the last one around 4 pm.",
    "Jordan sleeps about 5.5 hours a night on weekdays.",
    "Jordan's gym is PureGym on Canal Street; it has no pool.",
    "Jordan runs in Hoka Clifton shoes because of the knee.",
]


async def test_a_memory_that_shares_only_the_subject_of_a_question_does_not_answer_it(
    semantic_client: Any, semantic_owner: OwnerKey, semantic_settings: Settings
) -> None:
    live = await start(semantic_client, semantic_owner)
    await batch(semantic_client, live, [{"content": c} for c in JORDAN])
    await wait_embedded(semantic_settings.database_url, count=len(JORDAN))
    # Every memory is about Jordan; none holds a cholesterol level or a blood type.
    for question in ("What is Jordan's cholesterol level?", "What is Jordan's blood type?"):
        said = await answer(semantic_client, live, question)
        assert said["answer"] == "No stored memory answers this question.", question
        assert said["confidence"] < ANSWER_FLOOR
        assert said["sources"] == []
    # Asked in other words for what one of them holds, it answers, and says how surely.
    said = await answer(semantic_client, live, "Which medication does Jordan take?")
    assert said["answer"].startswith("Jordan takes 10 mg of lisinopril")
    assert said["confidence"] >= ANSWER_FLOOR


async def test_an_update_found_by_meaning_alone_ranks_above_the_fact_it_replaces(
    semantic_client: Any, semantic_owner: OwnerKey, semantic_settings: Settings
) -> None:
    live = await start(semantic_client, semantic_owner)
    await batch(semantic_client, live, [{"content": c} for c in DISTRACTORS])
    old = await remember(semantic_client, live, "Sam drives a 2015 grey Honda Civic, registration KX15 ABC.")
    await remember(semantic_client, live, "The guest Wi-Fi password is on the fridge.")
    new = await remember(
        semantic_client, live, "Sam sold the Honda and now drives a blue Kia Niro EV, registration KY24 XYZ."
    )
    await wait_embedded(semantic_settings.database_url, count=len(DISTRACTORS) + 3)
    # No word in common with either; the old fact is a little closer in meaning.
    found = await recall(semantic_client, live, body={"query": "What vehicle is parked in our driveway these days?"})
    assert ids_of(found)[:2] == [new, old]
    assert [m["signals"] for m in found["memories"][:2]] == [["semantic"], ["semantic"]]


async def test_an_update_lifts_only_above_the_fact_it_replaces(
    semantic_client: Any, semantic_owner: OwnerKey, semantic_settings: Settings
) -> None:
    live = await start(semantic_client, semantic_owner)
    await batch(semantic_client, live, [{"content": c} for c in DISTRACTORS])
    # The quarterly meeting with Mr Wang; Mr Wang prefers WeChat; the meeting moved: the move
    # updates the meeting, not how he likes to be contacted, though both name him.
    await remember(semantic_client, live, "与王先生的季度会议定在三月十日下午两点。")
    contact = await remember(semantic_client, live, "客户王先生喜欢用微信联系，不喜欢打电话。")
    moved = await remember(semantic_client, live, "季度会议改到三月十二日上午十点，因为王先生出差。")
    await wait_embedded(semantic_settings.database_url, count=len(DISTRACTORS) + 3)
    found = await recall(semantic_client, live, body={"query": "王先生喜欢怎么联系？"})
    assert ids_of(found)[0] == contact
    found = await recall(semantic_client, live, body={"query": "季度会议是什么时候？"})
    assert ids_of(found)[0] == moved


SALES = [
    "Sunrise Dairy runs plants across the state and had compressor failures last summer.",
    "Globex agreed to a surface-only trial at their crushing plant.",
    "Karen Liu likes short video calls on Thursday afternoons.",
    "Umbrella Chemicals needs on-premise data storage for its analytics.",
    "The demo kit is kept in the Chicago office, shelf B.",
]


async def test_a_memory_without_the_number_or_time_asked_for_does_not_answer(
    semantic_client: Any, semantic_owner: OwnerKey, semantic_settings: Settings
) -> None:
    live = await start(semantic_client, semantic_owner)
    await batch(semantic_client, live, [{"content": c} for c in SALES])
    await wait_embedded(semantic_settings.database_url, count=len(SALES))
    # Each question's subject is stored, but not the number or the time it asks for.
    for question in ("How many plants does Sunrise Dairy run?", "When does the Globex trial end?"):
        said = await answer(semantic_client, live, question)
        assert said["answer"] == "No stored memory answers this question.", question
        assert said["sources"] == []
    # Stored with them, they answer.
    await batch(
        semantic_client,
        live,
        [
            {"content": "Sunrise Dairy runs 6 plants."},
            {"content": "The Globex trial ends on 30 June, when ATEX certification is due."},
        ],
    )
    await wait_embedded(semantic_settings.database_url, count=len(SALES) + 2)
    said = await answer(semantic_client, live, "How many plants does Sunrise Dairy run?")
    assert "6 plants" in said["answer"]
    said = await answer(semantic_client, live, "When does the Globex trial end?")
    assert "30 June" in said["answer"]


DEVOPS = [
    "The production database runs PostgreSQL 13 on a db.r5.2xlarge instance.",
    "Session cache is a three-node ElastiCache Redis 7 cluster.",
    "CI runs on GitHub Actions with self-hosted runners.",
    "DNS is hosted on Cloudflare; the zone is managed by Terraform.",
    "Application logs are kept 14 days in Loki.",
    "No production deploys on Fridays; database migrations run on Tuesdays.",
]


async def test_a_memory_that_holds_the_words_of_a_question_but_not_what_it_asks_does_not_answer(
    semantic_client: Any, semantic_owner: OwnerKey, semantic_settings: Settings
) -> None:
    live = await start(semantic_client, semantic_owner)
    await batch(semantic_client, live, [{"content": c} for c in DEVOPS])
    await wait_embedded(semantic_settings.database_url, count=len(DEVOPS))
    # The memory holds "production database", and the whole question is no closer to it.
    said = await answer(semantic_client, live, "What is the root password of the production database?")
    assert said["answer"] == "No stored memory answers this question."
    assert said["sources"] == []
    said = await answer(semantic_client, live, "Which Postgres version does the production database run?")
    assert said["answer"].startswith("The production database runs PostgreSQL 13")
    assert said["confidence"] >= ANSWER_FLOOR
