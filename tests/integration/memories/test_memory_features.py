"""Memory that holds up (issue 3): idempotency, batches, filtered and paged recall, answer, records.

Everything runs against the real app with real Postgres and Redis. What a response
promises is checked in Postgres through a connection of the test's own, and the
session counters through `GET /session/current`.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from tests.helpers.http import API, assert_problem, parse_z
from tests.helpers.owners import Live, OwnerKey, start, unique_agent

MakeOwner = Callable[..., Awaitable[OwnerKey]]
Params = dict[str, Any] | list[tuple[str, Any]]

RECORD_FIELDS = {
    "memory_id",
    "agent_id",
    "session_id",
    "type",
    "title",
    "content",
    "tags",
    "confidence",
    "source",
    "metadata",
    "created_at",
    "updated_at",
    # the lifecycle (migration 0010)
    "occurred_at",
    "valid_until",
    "expired_at",
    "expired_reason",
    "status",
}
# MEMANTO's `id` and `text` beside `memory_id` and `content`.
RECALLED_FIELDS = {
    "memory_id",
    "content",
    "type",
    "title",
    "tags",
    "confidence",
    "score",
    "created_at",
    "session_id",
    "signals",
    "occurred_at",
    "status",
    "id",
    "text",
}


# --------------------------------------------------------------------------- helpers


async def remember(client: Any, live: Live, content: str, **fields: Any) -> str:
    response = await client.post(live.url("remember"), json={"content": content, **fields}, headers=live.headers)
    assert response.status_code == 201, response.text
    return str(response.json()["memory_id"])


async def batch(client: Any, live: Live, items: list[dict[str, Any]]) -> list[str]:
    response = await client.post(live.url("batch-remember"), json={"memories": items}, headers=live.headers)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["stored"] == len(items)
    return [str(i) for i in body["memory_ids"]]


async def recall(client: Any, live: Live, *, params: Params | None = None, body: Any = None) -> dict[str, Any]:
    response = await client.post(live.url("recall"), params=params, json=body, headers=live.headers)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def ids_of(result: dict[str, Any], key: str = "memories") -> list[str]:
    return [m["memory_id"] for m in result[key]]


async def answer(client: Any, live: Live, question: str) -> dict[str, Any]:
    response = await client.post(live.url("answer"), json={"question": question}, headers=live.headers)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def counters(client: Any, live: Live) -> tuple[int, int]:
    """(memories_stored, memories_retrieved) of the live session."""
    current = await client.get(f"{API}/session/current", headers=live.headers)
    assert current.status_code == 200, current.text
    body = current.json()
    return int(body["memories_stored"]), int(body["memories_retrieved"])


async def count_memories(db: asyncpg.Connection[Any], owner: OwnerKey, agent_id: str) -> int:
    return int(
        await db.fetchval(
            "SELECT count(*) FROM memories WHERE owner_id = $1 AND agent_id = $2", uuid.UUID(owner.owner_id), agent_id
        )
    )


async def count_sessions(db: asyncpg.Connection[Any], owner: OwnerKey, agent_id: str) -> int:
    return int(
        await db.fetchval(
            "SELECT count(*) FROM sessions WHERE owner_id = $1 AND agent_id = $2", uuid.UUID(owner.owner_id), agent_id
        )
    )


async def set_created_at(db: asyncpg.Connection[Any], memory_id: str, moment: datetime) -> None:
    await db.execute("UPDATE memories SET created_at = $2 WHERE memory_id = $1", uuid.UUID(memory_id), moment)


def z(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def first_error_field(response: httpx.Response) -> str:
    body = assert_problem(response, 422, "validation_error")
    assert body.get("errors"), body
    return str(body["errors"][0]["field"]).removeprefix("$.")


async def page_through_recall(
    client: Any,
    live: Live,
    query: str,
    limit: int,
    between_pages: Callable[[int], Awaitable[None]] | None = None,
) -> list[dict[str, Any]]:
    """Every page of one recall, following `next_cursor` (in the JSON body) to the end."""
    pages: list[dict[str, Any]] = []
    cursor: str | None = None
    for number in range(200):
        request: dict[str, Any] = {"query": query, "limit": limit}
        if cursor is not None:
            request["cursor"] = cursor
        page = await recall(client, live, body=request)
        assert page["count"] == len(page["memories"])
        assert page["count"] <= limit
        pages.append(page)
        cursor = page["next_cursor"]
        if cursor is None:
            return pages
        assert isinstance(cursor, str)
        assert cursor
        if between_pages is not None:
            await between_pages(number)
    raise AssertionError("recall never stopped paging")


# --------------------------------------------------------------------------- idempotency


async def test_idempotency_key_replays_the_first_memory(
    client: Any, owner: OwnerKey, db: asyncpg.Connection[Any]
) -> None:
    live = await start(client, owner)
    headers = {**live.headers, "Idempotency-Key": "order-7781-note"}
    first = await client.post(
        live.url("remember"), json={"content": "Order 7781 ships Tuesday", "type": "event"}, headers=headers
    )
    assert first.status_code == 201, first.text
    assert first.headers.get("Idempotent-Replayed") != "true"
    again = await client.post(
        live.url("remember"), json={"content": "Order 7781 ships Tuesday", "type": "event"}, headers=headers
    )
    assert again.status_code == 201, again.text
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json()["memory_id"] == first.json()["memory_id"]
    assert again.json()["type"] == "event"
    assert again.json()["created_at"] == first.json()["created_at"]
    # A retry whose request differs is refused (test_idempotency_conflicts.py) and stores nothing new.
    changed = await client.post(live.url("remember"), params={"content": "something else"}, headers=headers)
    assert_problem(changed, 422, "idempotency_key_reused")

    rows = await db.fetch(
        "SELECT memory_id, content FROM memories WHERE owner_id = $1 AND agent_id = $2",
        uuid.UUID(owner.owner_id),
        live.agent_id,
    )
    assert len(rows) == 1
    assert str(rows[0]["memory_id"]) == first.json()["memory_id"]
    assert rows[0]["content"] == "Order 7781 ships Tuesday"
    assert await counters(client, live) == (1, 0)

    # Without the header, the same content is a new memory.
    await remember(client, live, "Order 7781 ships Tuesday")
    assert await count_memories(db, owner, live.agent_id) == 2


async def test_idempotency_key_holds_across_sessions_of_the_agent(
    client: Any, owner: OwnerKey, db: asyncpg.Connection[Any]
) -> None:
    agent = unique_agent()
    first = await start(client, owner, agent)
    key = {"Idempotency-Key": "k-across-sessions"}
    original = await client.post(first.url("remember"), json={"content": "kept once"}, headers={**first.headers, **key})
    assert original.status_code == 201, original.text
    second = await start(client, owner, agent)  # supersedes the first
    replay = await client.post(second.url("remember"), json={"content": "kept once"}, headers={**second.headers, **key})
    assert replay.status_code == 201, replay.text
    assert replay.json()["memory_id"] == original.json()["memory_id"]
    assert replay.headers.get("Idempotent-Replayed") == "true"
    assert await count_memories(db, owner, agent) == 1
    assert await counters(client, second) == (0, 0)  # the new session stored nothing


async def test_idempotency_key_is_per_agent(client: Any, owner: OwnerKey, db: asyncpg.Connection[Any]) -> None:
    one, two = await start(client, owner), await start(client, owner)
    key = {"Idempotency-Key": "shared-key-1"}
    first = await client.post(one.url("remember"), json={"content": "agent one note"}, headers={**one.headers, **key})
    other = await client.post(two.url("remember"), json={"content": "agent two note"}, headers={**two.headers, **key})
    assert first.status_code == 201, first.text
    assert other.status_code == 201, other.text
    assert other.headers.get("Idempotent-Replayed") != "true"
    assert other.json()["memory_id"] != first.json()["memory_id"]
    assert other.json()["agent_id"] == two.agent_id
    assert await count_memories(db, owner, one.agent_id) == 1
    assert await count_memories(db, owner, two.agent_id) == 1
    content = await db.fetchval(
        "SELECT content FROM memories WHERE memory_id = $1", uuid.UUID(other.json()["memory_id"])
    )
    assert content == "agent two note"
    assert await counters(client, two) == (1, 0)


async def test_idempotency_key_is_per_owner(client: Any, make_owner: MakeOwner, db: asyncpg.Connection[Any]) -> None:
    first_owner, second_owner = await make_owner("idem-a"), await make_owner("idem-b")
    agent = unique_agent()  # the same agent name under both owners
    mine, theirs = await start(client, first_owner, agent), await start(client, second_owner, agent)
    key = {"Idempotency-Key": "same-key"}
    a = await client.post(mine.url("remember"), json={"content": "mine"}, headers={**mine.headers, **key})
    b = await client.post(theirs.url("remember"), json={"content": "theirs"}, headers={**theirs.headers, **key})
    assert a.status_code == 201, a.text
    assert b.status_code == 201, b.text
    assert a.json()["memory_id"] != b.json()["memory_id"]
    assert await count_memories(db, first_owner, agent) == 1
    assert await count_memories(db, second_owner, agent) == 1


@pytest.mark.slow
async def test_fifty_concurrent_requests_with_one_key_store_one_memory(
    server_url: str, owner: OwnerKey, db: asyncpg.Connection[Any]
) -> None:
    agent = unique_agent("idem")
    async with httpx.AsyncClient(base_url=server_url, timeout=30) as http:
        live = await start(http, owner, agent)
        headers = {**live.headers, "Idempotency-Key": f"burst-{uuid.uuid4()}"}

        async def send() -> httpx.Response:  # fifty retries of one request
            return await http.post(
                f"{API}/agents/{agent}/remember", json={"content": "burst note", "tags": ["burst"]}, headers=headers
            )

        responses = await asyncio.gather(*(send() for _ in range(50)))
        statuses = [r.status_code for r in responses]
        assert statuses == [201] * 50, [r.text for r in responses if r.status_code != 201][:3]
        memory_ids = {r.json()["memory_id"] for r in responses}
        assert len(memory_ids) == 1
        replayed = [r.headers.get("Idempotent-Replayed") == "true" for r in responses]
        assert replayed.count(False) == 1
        assert replayed.count(True) == 49

        rows = await db.fetch(
            "SELECT memory_id FROM memories WHERE owner_id = $1 AND agent_id = $2",
            uuid.UUID(owner.owner_id),
            agent,
        )
        assert [str(r["memory_id"]) for r in rows] == list(memory_ids)
        assert await counters(http, live) == (1, 0)


async def test_idempotency_key_longer_than_200_characters_is_422(
    client: Any, owner: OwnerKey, db: asyncpg.Connection[Any]
) -> None:
    live = await start(client, owner)
    too_long = await client.post(
        live.url("remember"), json={"content": "x"}, headers={**live.headers, "Idempotency-Key": "k" * 201}
    )
    assert first_error_field(too_long).lower().replace("-", "_") == "idempotency_key"
    assert await count_memories(db, owner, live.agent_id) == 0
    assert await counters(client, live) == (0, 0)
    longest = await client.post(
        live.url("remember"), json={"content": "x"}, headers={**live.headers, "Idempotency-Key": "k" * 200}
    )
    assert longest.status_code == 201, longest.text
    assert await count_memories(db, owner, live.agent_id) == 1


# --------------------------------------------------------------------------- batch-remember


def full_item(i: int) -> dict[str, Any]:
    return {
        "content": f"Batch memory number {i:03d} about the harbour crane",
        "type": ("fact", "goal", "decision", "event")[i % 4],
        "title": f"Title {i}" if i % 3 else None,
        "tags": [f"t{i % 5}", "batch"] if i % 2 else [],
        "confidence": round((i % 10) / 10, 1),
        "source": f"import-{i}" if i % 4 else None,
        "metadata": {"row": i, "nested": {"even": i % 2 == 0}} if i % 7 else None,
    }


async def test_batch_of_100_is_committed_in_input_order_with_every_field(
    client: Any, owner: OwnerKey, db: asyncpg.Connection[Any]
) -> None:
    live = await start(client, owner)
    await remember(client, live, "a single memory before the batch")
    items = [full_item(i) for i in range(100)]
    response = await client.post(live.url("batch-remember"), json={"memories": items}, headers=live.headers)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["stored"] == 100
    memory_ids = body["memory_ids"]
    assert len(memory_ids) == 100
    assert len(set(memory_ids)) == 100
    for memory_id in memory_ids:
        assert str(uuid.UUID(memory_id)) == memory_id

    rows = await db.fetch(
        "SELECT memory_id, session_id, type, title, content, tags, confidence, source, metadata "
        "FROM memories WHERE memory_id = ANY($1::uuid[])",
        [uuid.UUID(i) for i in memory_ids],
    )
    by_id = {str(r["memory_id"]): r for r in rows}
    assert len(by_id) == 100
    for i, memory_id in enumerate(memory_ids):  # the i-th id is the i-th item
        row, item = by_id[memory_id], items[i]
        assert row["content"] == item["content"]
        assert row["type"] == item["type"]
        assert row["title"] == item["title"]
        assert list(row["tags"]) == item["tags"]
        assert row["confidence"] == pytest.approx(item["confidence"], abs=1e-6)
        assert row["source"] == item["source"]
        assert row["session_id"] == live.session_id
        assert (None if row["metadata"] is None else json.loads(row["metadata"])) == item["metadata"]
    assert await count_memories(db, owner, live.agent_id) == 101
    assert await counters(client, live) == (101, 0)

    # What the records route shows agrees with what was written.
    shown = await client.get(live.url(f"memories/{memory_ids[13]}"), headers=live.headers)
    assert shown.status_code == 200, shown.text
    record = shown.json()
    for field in ("content", "type", "title", "tags", "source", "metadata"):
        assert record[field] == items[13][field], field
    assert record["confidence"] == pytest.approx(items[13]["confidence"], abs=1e-6)


async def test_batch_items_take_the_contract_defaults(
    client: Any, owner: OwnerKey, db: asyncpg.Connection[Any]
) -> None:
    live = await start(client, owner)
    [memory_id] = await batch(client, live, [{"content": "only content"}])
    row = await db.fetchrow(
        "SELECT type, title, tags, confidence, source, metadata FROM memories WHERE memory_id = $1",
        uuid.UUID(memory_id),
    )
    assert row is not None
    assert row["type"] == "fact"
    assert row["title"] is None
    assert list(row["tags"]) == []
    assert row["confidence"] == pytest.approx(0.8, abs=1e-6)
    assert row["source"] is None
    assert row["metadata"] is None


@pytest.mark.parametrize(
    ("bad_item", "field"),
    [
        pytest.param({"content": ""}, "memories[37].content", id="empty-content"),
        pytest.param({"type": "fact"}, "memories[37]", id="missing-content"),
        pytest.param({"content": "x", "type": "opinion"}, "memories[37].type", id="bad-type"),
        pytest.param({"content": "x", "confidence": 1.5}, "memories[37].confidence", id="confidence-over-1"),
        pytest.param({"content": "x", "title": "t" * 101}, "memories[37].title", id="title-101"),
        pytest.param({"content": "x", "tags": ["ok"] * 21}, "memories[37].tags", id="21-tags"),
        pytest.param({"content": "x", "metadata": {"blob": "m" * 4100}}, "memories[37].metadata", id="metadata-4k"),
        pytest.param({"content": "nul \u0000 byte"}, "memories[37].content", id="nul-in-content"),
    ],
)
async def test_one_bad_item_rejects_the_whole_batch(
    client: Any, owner: OwnerKey, db: asyncpg.Connection[Any], bad_item: dict[str, Any], field: str
) -> None:
    live = await start(client, owner)
    await remember(client, live, "already here")
    items: list[dict[str, Any]] = [{"content": f"fine item {i}"} for i in range(60)]
    items[37] = bad_item
    response = await client.post(live.url("batch-remember"), json={"memories": items}, headers=live.headers)
    assert first_error_field(response).startswith(field), response.text
    assert await count_memories(db, owner, live.agent_id) == 1
    assert await counters(client, live) == (1, 0)


async def test_metadata_over_4kb_names_its_index(client: Any, owner: OwnerKey, db: asyncpg.Connection[Any]) -> None:
    live = await start(client, owner)
    items: list[dict[str, Any]] = [{"content": f"m {i}", "metadata": {"i": i}} for i in range(10)]
    items[6]["metadata"] = {"k": "v" * 4097}
    response = await client.post(live.url("batch-remember"), json={"memories": items}, headers=live.headers)
    assert first_error_field(response) == "memories[6].metadata"
    # Just under the limit is fine.
    items[6]["metadata"] = {"k": "v" * 4000}
    await batch(client, live, items)
    assert await count_memories(db, owner, live.agent_id) == 10


@pytest.mark.parametrize("size", [0, 101])
async def test_batch_size_must_be_1_to_100(
    client: Any, owner: OwnerKey, db: asyncpg.Connection[Any], size: int
) -> None:
    live = await start(client, owner)
    items = [{"content": f"n {i}"} for i in range(size)]
    response = await client.post(live.url("batch-remember"), json={"memories": items}, headers=live.headers)
    assert first_error_field(response).startswith("memories")
    assert await count_memories(db, owner, live.agent_id) == 0
    assert await counters(client, live) == (0, 0)


async def test_batch_without_memories_is_422(client: Any, owner: OwnerKey) -> None:
    live = await start(client, owner)
    missing = await client.post(live.url("batch-remember"), json={}, headers=live.headers)
    assert first_error_field(missing).startswith("memories")
    not_a_list = await client.post(live.url("batch-remember"), json={"memories": "x"}, headers=live.headers)
    assert first_error_field(not_a_list).startswith("memories")


async def test_single_remember_with_a_nul_byte_is_422_not_500(
    client: Any, owner: OwnerKey, db: asyncpg.Connection[Any]
) -> None:
    live = await start(client, owner)
    response = await client.post(live.url("remember"), json={"content": "a\u0000b"}, headers=live.headers)
    assert first_error_field(response) == "content"
    assert await count_memories(db, owner, live.agent_id) == 0
    assert await counters(client, live) == (0, 0)


async def test_writes_with_an_ended_session_are_401_and_store_nothing(
    client: Any, owner: OwnerKey, db: asyncpg.Connection[Any]
) -> None:
    live = await start(client, owner)
    await remember(client, live, "stored while live")
    ended = await client.post(live.url("deactivate"), headers=live.headers)
    assert ended.status_code == 200, ended.text
    single = await client.post(live.url("remember"), json={"content": "too late"}, headers=live.headers)
    assert_problem(single, 401, "session_ended")
    keyed = await client.post(
        live.url("remember"), json={"content": "too late"}, headers={**live.headers, "Idempotency-Key": "late"}
    )
    assert_problem(keyed, 401, "session_ended")
    many = await client.post(
        live.url("batch-remember"), json={"memories": [{"content": "too late"}] * 3}, headers=live.headers
    )
    assert_problem(many, 401, "session_ended")
    assert await count_memories(db, owner, live.agent_id) == 1
    row = await db.fetchrow("SELECT memories_stored FROM sessions WHERE session_id = $1", live.session_id)
    assert row is not None
    assert row["memories_stored"] == 1


# --------------------------------------------------------------------------- recall: ranking and filters


async def test_recall_ranks_title_above_content(client: Any, owner: OwnerKey) -> None:
    live = await start(client, owner)
    in_content = await remember(client, live, "We talked about the quokka at lunch today", title="Lunch chat")
    in_title = await remember(client, live, "Seen twice near the lake this spring", title="Quokka sightings")
    await remember(client, live, "Nothing to do with it", title="Other")
    found = await recall(client, live, params={"query": "quokka"})
    assert [m["signals"][:1] for m in found["memories"]] == [["text"], ["text"]]
    assert ids_of(found) == [in_title, in_content]
    scores = [m["score"] for m in found["memories"]]
    assert scores[0] > scores[1] > 0
    for memory in found["memories"]:
        assert set(memory) == RECALLED_FIELDS


async def test_recall_filters_by_one_or_many_types(client: Any, owner: OwnerKey) -> None:
    live = await start(client, owner)
    ids = {t: await remember(client, live, f"walrus note as a {t}", type=t) for t in ("fact", "goal", "preference")}

    def found(result: dict[str, Any]) -> set[str]:
        return set(ids_of(result))

    assert found(await recall(client, live, params={"query": "walrus", "type": "fact"})) == {ids["fact"]}
    many = await recall(client, live, params=[("query", "walrus"), ("type", "fact"), ("type", "goal")])
    assert found(many) == {ids["fact"], ids["goal"]}
    body_many = await recall(client, live, body={"query": "walrus", "type": ["goal", "preference"]})
    assert found(body_many) == {ids["goal"], ids["preference"]}
    body_one = await recall(client, live, body={"query": "walrus", "type": "preference"})
    assert found(body_one) == {ids["preference"]}
    assert found(await recall(client, live, body={"query": "walrus", "type": ["error"]})) == set()
    assert found(await recall(client, live, body={"query": "walrus"})) == set(ids.values())


async def test_recall_tags_must_all_match(client: Any, owner: OwnerKey) -> None:
    live = await start(client, owner)
    ab = await remember(client, live, "narwhal with a and b", tags=["alpha", "beta"])
    a = await remember(client, live, "narwhal with a", tags=["alpha"])
    bc = await remember(client, live, "narwhal with b and c", tags=["beta", "gamma"])
    await remember(client, live, "narwhal without tags")

    async def found(params: Params | None = None, body: Any = None) -> set[str]:
        return set(ids_of(await recall(client, live, params=params, body=body)))

    assert await found(params={"query": "narwhal", "tags": "alpha"}) == {ab, a}
    assert await found(params=[("query", "narwhal"), ("tags", "alpha"), ("tags", "beta")]) == {ab}
    assert await found(body={"query": "narwhal", "tags": ["beta"]}) == {ab, bc}
    assert await found(body={"query": "narwhal", "tags": ["beta", "gamma"]}) == {bc}
    assert await found(body={"query": "narwhal", "tags": ["alpha", "gamma"]}) == set()


async def test_recall_filters_by_creation_time(client: Any, owner: OwnerKey, db: asyncpg.Connection[Any]) -> None:
    live = await start(client, owner)
    months = {m: datetime(2026, m, 1, 12, 0, tzinfo=UTC) for m in (1, 2, 3)}
    ids = {}
    for month, moment in months.items():
        ids[month] = await remember(client, live, f"ledger entry for month {month}")
        await set_created_at(db, ids[month], moment)

    async def found(params: Params | None = None, body: Any = None) -> set[str]:
        return set(ids_of(await recall(client, live, params=params, body=body)))

    mid_jan, mid_feb = "2026-01-15T00:00:00Z", "2026-02-15T00:00:00Z"
    assert await found(params={"query": "ledger", "created_after": mid_jan}) == {ids[2], ids[3]}
    assert await found(params={"query": "ledger", "created_before": mid_feb}) == {ids[1], ids[2]}
    assert await found(params={"query": "ledger", "created_after": mid_jan, "created_before": mid_feb}) == {ids[2]}
    assert await found(body={"query": "ledger", "created_after": mid_jan, "created_before": mid_feb}) == {ids[2]}
    assert await found(body={"query": "ledger", "created_after": "2026-03-02T00:00:00Z"}) == set()
    # Both bounds are strict.
    feb = z(months[2])
    assert await found(body={"query": "ledger", "created_after": feb}) == {ids[3]}
    assert await found(body={"query": "ledger", "created_before": feb}) == {ids[1]}
    # A time that is not a time is refused.
    bad = await client.post(
        live.url("recall"), params={"query": "ledger", "created_after": "last tuesday"}, headers=live.headers
    )
    assert first_error_field(bad) == "created_after"


async def test_recall_min_score_excludes_low_scores(client: Any, owner: OwnerKey) -> None:
    live = await start(client, owner)
    high = await remember(client, live, "The pelican came back", title="Pelican pelican")
    low = await remember(client, live, "Someone mentioned a pelican once")
    everything = await recall(client, live, params={"query": "pelican"})
    assert ids_of(everything) == [high, low]
    high_score, low_score = (m["score"] for m in everything["memories"])
    assert high_score > low_score > 0
    middle = (high_score + low_score) / 2
    assert ids_of(await recall(client, live, params={"query": "pelican", "min_score": middle})) == [high]
    assert ids_of(await recall(client, live, body={"query": "pelican", "min_score": middle})) == [high]
    assert ids_of(await recall(client, live, body={"query": "pelican", "min_score": 0})) == [high, low]
    assert ids_of(await recall(client, live, body={"query": "pelican", "min_score": high_score + 0.01})) == []
    negative = await client.post(live.url("recall"), json={"query": "pelican", "min_score": -1}, headers=live.headers)
    assert first_error_field(negative) == "min_score"


# --------------------------------------------------------------------------- recall: pages


def matching_items(word: str, count: int) -> list[dict[str, Any]]:
    """`count` memories that all match `word`, with several scores and ties among them."""
    items: list[dict[str, Any]] = []
    for i in range(count):
        repeats = " ".join([word] * (1 + i % 3))
        item: dict[str, Any] = {"content": f"{repeats} record {i}"}
        if i % 4 == 0:
            item["title"] = f"{word} heading"
        items.append(item)
    return items


async def test_recall_pages_through_every_match_without_duplicates_or_gaps(client: Any, owner: OwnerKey) -> None:
    live = await start(client, owner)
    expected = await batch(client, live, matching_items("marmot", 25))
    await batch(client, live, [{"content": f"unrelated beaver {i}"} for i in range(5)])

    pages = await page_through_recall(client, live, "marmot", limit=4)
    assert [p["count"] for p in pages] == [4, 4, 4, 4, 4, 4, 1]
    seen = [memory_id for page in pages for memory_id in ids_of(page)]
    assert len(seen) == len(set(seen)), "a memory came back twice"
    assert set(seen) == set(expected)
    scores = [m["score"] for page in pages for m in page["memories"]]
    assert scores == sorted(scores, reverse=True)  # best first, across pages too
    assert {s for p in pages for m in p["memories"] for s in m["signals"]} >= {"text"}
    assert await counters(client, live) == (30, 25)


async def test_recall_pages_with_the_cursor_as_a_query_parameter(client: Any, owner: OwnerKey) -> None:
    live = await start(client, owner)
    expected = await batch(client, live, matching_items("ibex", 9))
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"query": "ibex", "limit": 2}
        if cursor is not None:
            params["cursor"] = cursor
        page = await recall(client, live, params=params)
        seen += ids_of(page)
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 9
    assert set(seen) == set(expected)


@pytest.mark.parametrize(
    ("query", "signal"),
    [("harbor", "typo"), ("which harbour crane", "text")],
)
async def test_recall_pages_through_fallback_matches_too(client: Any, owner: OwnerKey, query: str, signal: str) -> None:
    live = await start(client, owner)
    words = ("harbour", "crane") if signal == "text" else ("harbour",)  # "harbor" is close to "harbour" only
    expected = await batch(client, live, [{"content": f"the {words[i % len(words)]} log entry {i}"} for i in range(11)])
    await batch(client, live, [{"content": f"unrelated beaver {i}"} for i in range(3)])
    pages = await page_through_recall(client, live, query, limit=4)
    assert {s for p in pages for m in p["memories"] for s in m["signals"]} == {signal}
    assert [p["count"] for p in pages] == [4, 4, 3]
    seen = [memory_id for page in pages for memory_id in ids_of(page)]
    assert len(seen) == len(set(seen))
    assert set(seen) == set(expected)


async def test_recall_with_exactly_limit_matches_has_no_next_cursor(client: Any, owner: OwnerKey) -> None:
    live = await start(client, owner)
    await batch(client, live, [{"content": f"lynx {i}"} for i in range(4)])
    page = await recall(client, live, body={"query": "lynx", "limit": 4})
    assert page["count"] == 4
    assert page["next_cursor"] is None


async def test_recall_pages_stay_exact_while_memories_are_written(client: Any, owner: OwnerKey) -> None:
    live = await start(client, owner)
    # Originals score high (the word in the title too); most new ones score low, so they
    # land in pages still to come, and some score high, so they land in pages already read.
    originals = await batch(client, live, [{"content": f"gecko gecko note {i}", "title": "gecko"} for i in range(25)])
    written: list[str] = []

    async def write_more(page_number: int) -> None:
        written.append(await remember(client, live, f"a gecko seen late, during page {page_number}"))
        written.append(await remember(client, live, f"gecko gecko gecko late note {page_number}", title="gecko gecko"))
        written.extend(await batch(client, live, [{"content": f"gecko batch {page_number}-{j}"} for j in range(3)]))

    pages = await page_through_recall(client, live, "gecko", limit=4, between_pages=write_more)
    seen = [memory_id for page in pages for memory_id in ids_of(page)]
    assert len(seen) == len(set(seen)), "a memory came back twice"
    for memory_id in originals:
        assert seen.count(memory_id) == 1, memory_id
    assert set(seen) <= set(originals) | set(written)
    assert written  # the test did write while paging
    stored, retrieved = await counters(client, live)
    assert stored == 25 + len(written)
    assert retrieved == len(seen)


async def test_recall_cursor_belongs_to_its_query(client: Any, owner: OwnerKey) -> None:
    live = await start(client, owner)
    await batch(client, live, [{"content": f"otter and heron {i}", "type": "fact"} for i in range(6)])
    first = await recall(client, live, body={"query": "otter", "limit": 2})
    cursor = first["next_cursor"]
    assert cursor
    # Another query, or the same query with other filters: refused, nothing counted.
    before = await counters(client, live)
    for request in (
        {"query": "heron", "limit": 2, "cursor": cursor},
        {"query": "otter", "limit": 2, "cursor": cursor, "type": "fact"},
        {"query": "otter", "limit": 2, "cursor": cursor, "tags": ["x"]},
        {"query": "otter", "limit": 2, "cursor": cursor, "min_score": 0.1},
    ):
        response = await client.post(live.url("recall"), json=request, headers=live.headers)
        assert first_error_field(response) == "cursor", request
    in_query = await client.post(live.url("recall"), params={"query": "heron", "cursor": cursor}, headers=live.headers)
    assert first_error_field(in_query) == "cursor"
    assert await counters(client, live) == before
    # The right query still pages on.
    second = await recall(client, live, body={"query": "otter", "limit": 2, "cursor": cursor})
    assert set(ids_of(second)).isdisjoint(ids_of(first))


@pytest.mark.parametrize("cursor", ["garbage!!", "eyJ4IjogMX0", "bm90IGpzb24", "W10"])
async def test_recall_rejects_a_cursor_it_did_not_issue(client: Any, owner: OwnerKey, cursor: str) -> None:
    live = await start(client, owner)
    await remember(client, live, "a beaver dam")
    in_body = await client.post(live.url("recall"), json={"query": "beaver", "cursor": cursor}, headers=live.headers)
    in_query = await client.post(live.url("recall"), params={"query": "beaver", "cursor": cursor}, headers=live.headers)
    assert first_error_field(in_body) == "cursor"
    assert first_error_field(in_query) == "cursor"


# --------------------------------------------------------------------------- recall: fallbacks and scope


async def test_recall_falls_back_to_any_word_for_a_question(client: Any, owner: OwnerKey) -> None:
    live = await start(client, owner)
    email = await remember(client, live, "Customer prefers email")
    await remember(client, live, "The warehouse opens at nine")
    direct = await recall(client, live, params={"query": "customer email"})
    assert ids_of(direct) == [email]
    question = await recall(client, live, params={"query": "which contact method does the customer prefer"})
    assert ids_of(question) == [email]


@pytest.mark.parametrize("query", ["emial", "invoce", "billin", "custmer"])
async def test_recall_falls_back_to_fuzzy_for_misspelled_or_partial_words(
    client: Any, owner: OwnerKey, query: str
) -> None:
    live = await start(client, owner)
    expected = {
        "emial": await remember(client, live, "Customer prefers email"),
        "invoce": await remember(client, live, "The invoice goes out monthly"),
        "billin": await remember(client, live, "Ask about the billing address"),
    }
    expected["custmer"] = expected["emial"]
    await remember(client, live, "The warehouse opens at nine")
    found = await recall(client, live, params={"query": query})
    assert found["memories"][0]["signals"] == ["typo"]
    assert found["count"] >= 1
    assert ids_of(found)[0] == expected[query]
    assert "The warehouse opens at nine" not in {m["content"] for m in found["memories"]}


async def test_recall_matching_nothing_is_empty(client: Any, owner: OwnerKey) -> None:
    live = await start(client, owner)
    await remember(client, live, "Customer prefers email")
    await remember(client, live, "Billing date is the 15th of every month")
    for query in ("zeppelin", "zeppelin hovercraft"):
        found = await recall(client, live, params={"query": query})
        assert found["count"] == 0, query
        assert found["memories"] == []
        assert found["next_cursor"] is None
    assert await counters(client, live) == (2, 0)


async def test_recall_of_an_unrelated_question_is_empty(client: Any, owner: OwnerKey) -> None:
    # No meaningful word of the question is in any memory: stop words alone must not match.
    live = await start(client, owner)
    await remember(client, live, "Customer prefers email")
    await remember(client, live, "Billing date is the 15th of every month")
    found = await recall(client, live, params={"query": "what is the capital of Mongolia"})
    assert found["memories"] == [], found
    assert found["count"] == 0


async def test_recall_never_reaches_another_agent_or_owner(client: Any, make_owner: MakeOwner) -> None:
    me, stranger = await make_owner("me"), await make_owner("stranger")
    agent = unique_agent()
    mine = await start(client, me, agent)
    sibling = await start(client, me)  # another agent of the same owner
    foreign = await start(client, stranger, agent)  # the same agent name under another owner
    my_id = await remember(client, mine, "The xylophonist tunes the mallets on Fridays")
    await batch(client, sibling, [{"content": f"xylophonist mallets of the sibling {i}"} for i in range(3)])
    await batch(client, foreign, [{"content": f"xylophonist mallets of the stranger {i}"} for i in range(3)])

    for request in (
        {"query": "xylophonist"},  # all words
        {"query": "xylophonist mallets sibling stranger"},  # any word
        {"query": "xylophonst"},  # fuzzy
        {"query": "xylophonist", "limit": 1},
    ):
        pages = await page_through_recall(client, mine, request["query"], limit=request.get("limit", 10))
        assert [i for p in pages for i in ids_of(p)] == [my_id], request
    said = await answer(client, mine, "Who tunes the mallets?")
    assert ids_of(said, "sources") == [my_id]
    assert "sibling" not in said["answer"]
    assert "stranger" not in said["answer"]


# --------------------------------------------------------------------------- answer


BILLING = (
    "Billing date is the 15th of every month. The customer prefers email for contact. The account was opened in 2019."
)


async def test_answer_extracts_the_sentences_that_answer(client: Any, owner: OwnerKey) -> None:
    live = await start(client, owner)
    billing = await remember(client, live, BILLING)
    await remember(client, live, "The office dog is called Biscuit. He likes long walks.")
    await remember(client, live, "Support tickets are answered within two hours. Weekends are covered by on-call.")
    stored, retrieved = await counters(client, live)

    response = await client.post(
        live.url("answer"), json={"question": "What is the billing date?"}, headers=live.headers
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["mode"] == "extractive"
    assert body["question"] == "What is the billing date?"
    assert body["agent_id"] == live.agent_id
    assert body["session_id"] == live.session_id
    assert "15th" in body["answer"]
    assert "email" not in body["answer"]
    assert "2019" not in body["answer"]
    assert "Biscuit" not in body["answer"]
    assert ids_of(body, "sources") == [billing]
    assert set(body["sources"][0]) == RECALLED_FIELDS
    assert await counters(client, live) == (stored, retrieved + 1)


async def test_answer_names_exactly_the_memories_it_used(client: Any, owner: OwnerKey) -> None:
    live = await start(client, owner)
    billing = await remember(client, live, "Billing runs on the 15th. The office has a red door.")
    invoices = await remember(client, live, "Invoices are sent by email. Parking is free on Sundays.")
    await remember(client, live, "The office dog is called Biscuit.")
    before = await counters(client, live)
    body = await answer(client, live, "billing and invoices")
    assert "15th" in body["answer"]
    assert "Invoices are sent by email" in body["answer"]
    for unrelated in ("red door", "Parking", "Biscuit"):
        assert unrelated not in body["answer"]
    assert sorted(ids_of(body, "sources")) == sorted([billing, invoices])
    # Every source gave the answer a sentence.
    for source in body["sources"]:
        assert any(s.strip() and s.strip() in body["answer"] for s in re.split(r"(?<=\.)\s+", source["content"]))
    assert await counters(client, live) == (before[0], before[1] + 2)


async def test_answer_says_plainly_when_nothing_answers(client: Any, owner: OwnerKey) -> None:
    live = await start(client, owner)
    await remember(client, live, BILLING)
    before = await counters(client, live)
    body = await answer(client, live, "What is the capital of Mongolia?")
    assert body["sources"] == []
    assert isinstance(body["answer"], str)
    assert body["answer"].strip()
    for sentence in ("15th", "email", "2019"):
        assert sentence not in body["answer"]
    assert body["mode"] == "extractive"
    assert await counters(client, live) == before
    # An agent without any memory says so too.
    empty = await start(client, owner)
    nothing = await answer(client, empty, "What is the billing date?")
    assert nothing["sources"] == []
    assert nothing["answer"].strip()


@pytest.mark.parametrize("body", [{}, {"question": ""}, {"question": "q" * 1001}, {"limit": 3}])
async def test_answer_requires_a_question(client: Any, owner: OwnerKey, body: dict[str, Any]) -> None:
    live = await start(client, owner)
    await remember(client, live, BILLING)
    response = await client.post(live.url("answer"), json=body, headers=live.headers)
    assert first_error_field(response) == "question"
    assert await counters(client, live) == (1, 0)


# --------------------------------------------------------------------------- counters


async def test_session_counters_are_exact_over_mixed_operations(client: Any, owner: OwnerKey) -> None:
    live = await start(client, owner)
    for i in range(3):
        await remember(client, live, f"puffin single {i}")
    key = {**live.headers, "Idempotency-Key": "once"}
    for _ in range(3):  # one store, two replays
        response = await client.post(live.url("remember"), json={"content": "puffin keyed"}, headers=key)
        assert response.status_code == 201, response.text
    await batch(client, live, [{"content": f"puffin batch {i}"} for i in range(10)])
    bad = [{"content": "puffin"}] * 5 + [{"content": ""}]
    assert (
        await client.post(live.url("batch-remember"), json={"memories": bad}, headers=live.headers)
    ).status_code == 422
    assert await counters(client, live) == (14, 0)

    pages = await page_through_recall(client, live, "puffin", limit=4)
    returned = sum(p["count"] for p in pages)
    assert returned == 14
    assert await counters(client, live) == (14, 14)
    assert (await recall(client, live, params={"query": "zeppelin"}))["count"] == 0
    said = await answer(client, live, "Which puffin batch?")
    used = len(said["sources"])
    assert used >= 1
    bad_recall = await client.post(live.url("recall"), json={"query": "puffin", "limit": 0}, headers=live.headers)
    assert bad_recall.status_code == 422
    assert await counters(client, live) == (14, 14 + used)


# --------------------------------------------------------------------------- memory records


async def page_through_list(client: Any, live: Live, params: Params) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(100):
        query = list(params.items()) if isinstance(params, dict) else list(params)
        if cursor is not None:
            query.append(("cursor", cursor))
        response = await client.get(live.url("memories"), params=query, headers=live.headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["agent_id"] == live.agent_id
        assert body["count"] == len(body["memories"])
        records += body["memories"]
        cursor = body["next_cursor"]
        if cursor is None:
            return records
    raise AssertionError("the list never stopped paging")


async def test_list_memories_newest_first_in_keyset_pages(
    client: Any, owner: OwnerKey, db: asyncpg.Connection[Any]
) -> None:
    live = await start(client, owner)
    singles = [await remember(client, live, f"single {i}") for i in range(6)]
    tied = await batch(client, live, [{"content": f"tied {i}"} for i in range(4)])  # one created_at for all four
    base = datetime(2026, 5, 1, tzinfo=UTC)
    # Creation times out of insertion order, so that the order must come from created_at.
    for offset, memory_id in zip((3, 0, 5, 1, 4, 2), singles, strict=True):
        await set_created_at(db, memory_id, base + timedelta(hours=offset * 2))
    for memory_id in tied:
        await set_created_at(db, memory_id, base + timedelta(hours=5))

    records = await page_through_list(client, live, {"limit": 3})
    seen = [r["memory_id"] for r in records]
    assert len(seen) == 10
    assert len(set(seen)) == 10
    assert set(seen) == set(singles) | set(tied)
    by_time = {
        str(r["memory_id"]): r["created_at"]
        for r in await db.fetch("SELECT memory_id, created_at FROM memories WHERE agent_id = $1", live.agent_id)
    }
    times = [by_time[i] for i in seen]
    assert times == sorted(times, reverse=True)
    distinct = [i for i in seen if i in singles]
    assert distinct == [singles[2], singles[4], singles[0], singles[5], singles[3], singles[1]]
    for record in records:
        assert set(record) == RECORD_FIELDS

    first_page = await client.get(live.url("memories"), params={"limit": 3}, headers=live.headers)
    assert first_page.json()["count"] == 3
    everything = await client.get(live.url("memories"), headers=live.headers)
    assert [r["memory_id"] for r in everything.json()["memories"]] == seen
    assert everything.json()["next_cursor"] is None


async def test_list_memories_filters(client: Any, owner: OwnerKey, db: asyncpg.Connection[Any]) -> None:
    live = await start(client, owner)
    a = await remember(client, live, "one", type="fact", tags=["red", "blue"])
    b = await remember(client, live, "two", type="goal", tags=["red"])
    c = await remember(client, live, "three", type="decision", tags=["blue"])
    for memory_id, day in ((a, 1), (b, 2), (c, 3)):
        await set_created_at(db, memory_id, datetime(2026, 4, day, tzinfo=UTC))

    async def listed(params: Params) -> list[str]:
        return [r["memory_id"] for r in await page_through_list(client, live, params)]

    assert await listed({}) == [c, b, a]
    assert await listed({"type": "goal"}) == [b]
    assert await listed([("type", "fact"), ("type", "decision")]) == [c, a]
    assert await listed({"tags": "red"}) == [b, a]
    assert await listed([("tags", "red"), ("tags", "blue")]) == [a]
    assert await listed({"created_after": "2026-04-01T12:00:00Z"}) == [c, b]
    assert await listed({"created_before": "2026-04-02T12:00:00Z"}) == [b, a]
    assert await listed({"created_after": "2026-04-01T12:00:00Z", "created_before": "2026-04-02T12:00:00Z"}) == [b]
    assert await listed([("type", "fact"), ("type", "goal"), ("tags", "red"), ("limit", 1)]) == [b, a]


@pytest.mark.parametrize(
    "params",
    [
        {"type": "opinion"},
        {"limit": 0},
        {"limit": 101},
        {"cursor": "garbage!!"},
        {"created_after": "yesterday"},
    ],
)
async def test_list_memories_rejects_bad_parameters_naming_them(
    client: Any, owner: OwnerKey, params: dict[str, Any]
) -> None:
    live = await start(client, owner)
    await remember(client, live, "listed")
    response = await client.get(live.url("memories"), params=params, headers=live.headers)
    assert first_error_field(response) == next(iter(params))


async def test_get_one_memory_shows_every_field(client: Any, owner: OwnerKey) -> None:
    live = await start(client, owner)
    fields = {
        "type": "decision",
        "title": "Vendor choice",
        "tags": ["vendors", "q3"],
        "confidence": 0.65,
        "source": "meeting-notes",
        "metadata": {"attendees": 4, "room": "B2", "followup": None},
    }
    memory_id = await remember(client, live, "We chose the northern vendor for steel", **fields)
    response = await client.get(live.url(f"memories/{memory_id}"), headers=live.headers)
    assert response.status_code == 200, response.text
    record = response.json()
    assert set(record) == RECORD_FIELDS
    assert record["memory_id"] == memory_id
    assert record["agent_id"] == live.agent_id
    assert record["session_id"] == live.session_id
    assert record["content"] == "We chose the northern vendor for steel"
    assert record["type"] == "decision"
    assert record["title"] == "Vendor choice"
    assert record["tags"] == ["vendors", "q3"]
    assert record["confidence"] == pytest.approx(0.65, abs=1e-6)
    assert record["source"] == "meeting-notes"
    assert record["metadata"] == {"attendees": 4, "room": "B2", "followup": None}
    created, updated = parse_z(record["created_at"]), parse_z(record["updated_at"])
    assert abs((datetime.now(UTC) - created).total_seconds()) < 60
    assert updated >= created


async def test_patch_changes_only_the_fields_given(client: Any, owner: OwnerKey, db: asyncpg.Connection[Any]) -> None:
    live = await start(client, owner)
    memory_id = await remember(
        client,
        live,
        "Lunch order is pineapple pizza",
        type="preference",
        title="Lunch",
        tags=["food"],
        confidence=0.9,
        source="chat",
        metadata={"v": 1},
    )
    url = live.url(f"memories/{memory_id}")
    original = (await client.get(url, headers=live.headers)).json()
    await db.execute(
        "UPDATE memories SET created_at = created_at - interval '1 hour', updated_at = updated_at - interval '1 hour' "
        "WHERE memory_id = $1",
        uuid.UUID(memory_id),
    )

    cleared = await client.patch(url, json={"title": None}, headers=live.headers)
    assert cleared.status_code == 200, cleared.text
    record = cleared.json()
    assert record["title"] is None
    for field in ("content", "type", "tags", "confidence", "source", "metadata", "session_id", "memory_id"):
        assert record[field] == original[field], field
    assert parse_z(record["updated_at"]) > parse_z(record["created_at"])

    changed = await client.patch(
        url, json={"tags": ["food", "friday"], "confidence": 0.5, "source": None, "type": "fact"}, headers=live.headers
    )
    assert changed.status_code == 200, changed.text
    record = changed.json()
    assert record["tags"] == ["food", "friday"]
    assert record["confidence"] == pytest.approx(0.5, abs=1e-6)
    assert record["source"] is None
    assert record["type"] == "fact"
    assert record["title"] is None  # cleared before, stays cleared
    assert record["metadata"] == {"v": 1}
    assert record["content"] == original["content"]
    assert (await client.get(url, headers=live.headers)).json() == record

    # A new content is searchable at once; the old words are gone from the index.
    assert ids_of(await recall(client, live, params={"query": "pineapple"})) == [memory_id]
    content = await client.patch(url, json={"content": "Lunch order is watermelon salad"}, headers=live.headers)
    assert content.status_code == 200, content.text
    assert content.json()["content"] == "Lunch order is watermelon salad"
    assert ids_of(await recall(client, live, params={"query": "watermelon"})) == [memory_id]
    assert (await recall(client, live, params={"query": "pineapple"}))["count"] == 0
    row = await db.fetchrow("SELECT content, title, source FROM memories WHERE memory_id = $1", uuid.UUID(memory_id))
    assert row is not None
    assert row["content"] == "Lunch order is watermelon salad"
    assert row["title"] is None
    assert row["source"] is None

    # A patched title is searchable too.
    await client.patch(url, json={"title": "Kumquat"}, headers=live.headers)
    assert ids_of(await recall(client, live, params={"query": "kumquat"})) == [memory_id]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, None),
        ({"type": "opinion"}, "type"),
        ({"content": ""}, "content"),
        ({"content": None}, "content"),
        ({"confidence": 1.5}, "confidence"),
        ({"tags": ["x"] * 21}, "tags"),
        ({"title": "t" * 101}, "title"),
        ({"metadata": {"k": "v" * 4097}}, "metadata"),
    ],
)
async def test_patch_rejects_bad_changes_and_changes_nothing(
    client: Any, owner: OwnerKey, body: dict[str, Any], field: str | None
) -> None:
    live = await start(client, owner)
    memory_id = await remember(client, live, "stays as it was", title="Same", tags=["a"])
    url = live.url(f"memories/{memory_id}")
    before = (await client.get(url, headers=live.headers)).json()
    response = await client.patch(url, json=body, headers=live.headers)
    problem = assert_problem(response, 422, "validation_error")
    if field is not None:
        assert problem["errors"][0]["field"].removeprefix("$.") == field
    assert (await client.get(url, headers=live.headers)).json() == before


async def test_delete_memory_then_it_is_gone(client: Any, owner: OwnerKey, db: asyncpg.Connection[Any]) -> None:
    live = await start(client, owner)
    doomed = await remember(client, live, "the toucan is temporary")
    kept = await remember(client, live, "the toucan stays")
    url = live.url(f"memories/{doomed}")
    deleted = await client.delete(url, headers=live.headers)
    assert deleted.status_code == 204, deleted.text
    assert deleted.content == b""
    assert_problem(await client.get(url, headers=live.headers), 404, "memory_not_found")
    assert_problem(await client.delete(url, headers=live.headers), 404, "memory_not_found")
    assert_problem(await client.patch(url, json={"title": "x"}, headers=live.headers), 404, "memory_not_found")
    assert await db.fetchval("SELECT count(*) FROM memories WHERE memory_id = $1", uuid.UUID(doomed)) == 0
    assert ids_of(await recall(client, live, params={"query": "toucan"})) == [kept]
    listed = await client.get(live.url("memories"), headers=live.headers)
    assert [r["memory_id"] for r in listed.json()["memories"]] == [kept]


@pytest.mark.parametrize("memory_id", ["not-a-uuid", "12345", "0" * 40])
async def test_a_memory_id_that_is_not_a_uuid_is_404(client: Any, owner: OwnerKey, memory_id: str) -> None:
    live = await start(client, owner)
    url = live.url(f"memories/{memory_id}")
    assert_problem(await client.get(url, headers=live.headers), 404, "memory_not_found")
    assert_problem(await client.patch(url, json={"title": "x"}, headers=live.headers), 404, "memory_not_found")
    assert_problem(await client.delete(url, headers=live.headers), 404, "memory_not_found")
    unknown = live.url(f"memories/{uuid.uuid4()}")
    assert_problem(await client.get(unknown, headers=live.headers), 404, "memory_not_found")


async def test_another_agents_token_is_refused_on_every_memory_route(
    client: Any, owner: OwnerKey, db: asyncpg.Connection[Any]
) -> None:
    target = await start(client, owner)
    intruder = await start(client, owner)
    memory_id = await remember(client, target, "private to the target", title="Secret")
    base = f"{API}/agents/{target.agent_id}"
    calls: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", f"{base}/memories", {}),
        ("GET", f"{base}/memories/{memory_id}", {}),
        ("PATCH", f"{base}/memories/{memory_id}", {"json": {"title": "hijacked"}}),
        ("DELETE", f"{base}/memories/{memory_id}", {}),
        ("POST", f"{base}/recall", {"json": {"query": "private"}}),
        ("POST", f"{base}/answer", {"json": {"question": "what is private?"}}),
        ("POST", f"{base}/remember", {"json": {"content": "planted"}}),
        ("POST", f"{base}/batch-remember", {"json": {"memories": [{"content": "planted"}]}}),
    ]
    for method, path, kwargs in calls:
        response = await client.request(method, path, headers=intruder.headers, **kwargs)
        assert_problem(response, 403, "agent_mismatch")
    row = await db.fetchrow("SELECT title FROM memories WHERE memory_id = $1", uuid.UUID(memory_id))
    assert row is not None
    assert row["title"] == "Secret"
    assert await count_memories(db, owner, target.agent_id) == 1
    assert await count_memories(db, owner, intruder.agent_id) == 0
    assert await counters(client, intruder) == (0, 0)


async def test_another_owners_memory_is_not_found(
    client: Any, make_owner: MakeOwner, db: asyncpg.Connection[Any]
) -> None:
    me, stranger = await make_owner("me"), await make_owner("stranger")
    agent = unique_agent()  # the same agent name under both owners
    mine = await start(client, me, agent)
    theirs = await start(client, stranger, agent)
    their_memory = await remember(client, theirs, "the stranger's memory", title="Theirs")
    url = mine.url(f"memories/{their_memory}")
    assert_problem(await client.get(url, headers=mine.headers), 404, "memory_not_found")
    assert_problem(await client.patch(url, json={"title": "mine now"}, headers=mine.headers), 404, "memory_not_found")
    assert_problem(await client.delete(url, headers=mine.headers), 404, "memory_not_found")
    row = await db.fetchrow("SELECT title FROM memories WHERE memory_id = $1", uuid.UUID(their_memory))
    assert row is not None
    assert row["title"] == "Theirs"
    listed = await client.get(mine.url("memories"), headers=mine.headers)
    assert listed.json()["memories"] == []
    # Another agent of my own owner: also not found under my agent.
    sibling = await start(client, me)
    sibling_memory = await remember(client, sibling, "the sibling's memory")
    assert_problem(
        await client.get(mine.url(f"memories/{sibling_memory}"), headers=mine.headers), 404, "memory_not_found"
    )


# --------------------------------------------------------------------------- agents


async def test_agent_counts_follow_batches_singles_and_deletes(
    client: Any, owner: OwnerKey, db: asyncpg.Connection[Any]
) -> None:
    agent = unique_agent()
    first = await start(client, owner, agent)
    batch_ids = await batch(client, first, [{"content": f"count me {i}"} for i in range(7)])
    second = await start(client, owner, agent)  # supersedes the first
    singles = [await remember(client, second, f"single {i}") for i in range(3)]
    for memory_id in (batch_ids[0], batch_ids[4], singles[1]):
        response = await client.delete(second.url(f"memories/{memory_id}"), headers=second.headers)
        assert response.status_code == 204, response.text
    rejected = [{"content": "never"}, {"content": "x", "type": "nope"}]
    response = await client.post(second.url("batch-remember"), json={"memories": rejected}, headers=second.headers)
    assert response.status_code == 422

    shown = await client.get(f"{API}/agents/{agent}", headers=owner.headers)
    assert shown.status_code == 200, shown.text
    body = shown.json()
    assert body["memory_count"] == 7
    assert body["session_count"] == 2
    assert await count_memories(db, owner, agent) == 7
    assert await count_sessions(db, owner, agent) == 2
    assert body["active_session"]["memories_stored"] == 3


async def test_deleting_an_agent_removes_its_memories_and_history_for_good(
    client: Any, owner: OwnerKey, db: asyncpg.Connection[Any]
) -> None:
    agent = unique_agent()
    first = await start(client, owner, agent)
    await batch(client, first, [{"content": f"doomed {i}"} for i in range(5)])
    second = await start(client, owner, agent)
    await remember(client, second, "doomed single", tags=["x"])
    bystander = await start(client, owner)
    await remember(client, bystander, "survives")
    assert await count_memories(db, owner, agent) == 6
    assert await count_sessions(db, owner, agent) == 2

    deleted = await client.delete(f"{API}/agents/{agent}", headers=owner.headers)
    assert deleted.status_code == 204, deleted.text
    assert await count_memories(db, owner, agent) == 0
    assert await count_sessions(db, owner, agent) == 0
    assert_problem(await client.get(f"{API}/agents/{agent}", headers=owner.headers), 404, "agent_not_found")
    assert_problem(await client.get(f"{API}/session/current", headers=second.headers), 401, "session_ended")
    assert await count_memories(db, owner, bystander.agent_id) == 1

    # The same name again starts from nothing.
    again = await start(client, owner, agent)
    assert (await recall(client, again, params={"query": "doomed"}))["count"] == 0
    fresh = (await client.get(f"{API}/agents/{agent}", headers=owner.headers)).json()
    assert fresh["memory_count"] == 0
    assert fresh["session_count"] == 1
