"""An Idempotency-Key sent again with a different request is a 422 that says so (IETF
idempotency-key draft), not a silent replay of the first; with the same request it replays.

The key is bound to a fingerprint of the request stored with the first memory (migration
0013), so a PATCH of the memory afterwards does not turn a true retry into a conflict.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from tests.helpers.http import API, assert_problem
from tests.helpers.logs import collected_logs
from tests.helpers.owners import Live, OwnerKey, start


async def stored(db: asyncpg.Connection[Any], owner: OwnerKey, agent_id: str) -> list[str]:
    rows = await db.fetch(
        "SELECT content FROM memories WHERE owner_id = $1 AND agent_id = $2 ORDER BY content",
        uuid.UUID(owner.owner_id),
        agent_id,
    )
    return [r["content"] for r in rows]


async def stored_counter(client: Any, live: Live) -> int:
    current = await client.get(f"{API}/session/current", headers=live.headers)
    assert current.status_code == 200, current.text
    return int(current.json()["memories_stored"])


async def test_the_same_key_with_another_body_is_422_and_stores_nothing(
    client: Any, owner: OwnerKey, db: asyncpg.Connection[Any]
) -> None:
    live = await start(client, owner)
    headers = {**live.headers, "Idempotency-Key": "invoice-42"}
    first = await client.post(
        live.url("remember"), json={"content": "Invoice 42 is paid", "tags": ["billing"]}, headers=headers
    )
    assert first.status_code == 201, first.text

    with collected_logs() as logs:
        for other in (
            {"content": "Invoice 42 is overdue", "tags": ["billing"]},  # another content
            {"content": "Invoice 42 is paid", "tags": ["billing", "paid"]},  # another tag
            {"content": "Invoice 42 is paid", "tags": ["billing"], "confidence": 0.5},  # another confidence
            {"content": "Invoice 42 is paid", "tags": ["billing"], "type": "event"},  # another type
        ):
            refused = await client.post(live.url("remember"), json=other, headers=headers)
            body = assert_problem(refused, 422, "idempotency_key_reused")
            assert "invoice-42" in body["detail"]
            assert body["errors"] == [
                {"field": "Idempotency-Key", "message": "first used with a different request", "source": "header"}
            ]
            assert "Idempotent-Replayed" not in refused.headers
    assert logs.errors() == []
    assert await stored(db, owner, live.agent_id) == ["Invoice 42 is paid"]
    assert await stored_counter(client, live) == 1  # the refused requests counted nothing

    # The same request again (in any form: query parameters, fields in another order, the
    # defaults spelled out) is a retry: the first result again.
    for same in (
        {"json": {"tags": ["billing"], "content": "Invoice 42 is paid"}},
        {"json": {"content": "Invoice 42 is paid", "tags": ["billing"], "confidence": 0.8, "type": "fact"}},
    ):
        replay = await client.post(live.url("remember"), headers=headers, **same)
        assert replay.status_code == 201, replay.text
        assert replay.headers["Idempotent-Replayed"] == "true"
        assert replay.json()["memory_id"] == first.json()["memory_id"]
    assert await stored(db, owner, live.agent_id) == ["Invoice 42 is paid"]
    assert await stored_counter(client, live) == 1


async def test_a_query_parameter_request_and_its_body_twin_are_one_request(client: Any, owner: OwnerKey) -> None:
    live = await start(client, owner)
    headers = {**live.headers, "Idempotency-Key": "call-pref"}
    first = await client.post(live.url("remember"), params={"content": "Prefers a morning call"}, headers=headers)
    assert first.status_code == 201, first.text
    twin = await client.post(live.url("remember"), json={"content": "Prefers a morning call"}, headers=headers)
    assert twin.status_code == 201, twin.text
    assert twin.json()["memory_id"] == first.json()["memory_id"]
    other = await client.post(live.url("remember"), params={"content": "Prefers an evening call"}, headers=headers)
    assert_problem(other, 422, "idempotency_key_reused")


async def test_a_retry_after_the_memory_was_changed_still_replays(client: Any, owner: OwnerKey) -> None:
    live = await start(client, owner)
    headers = {**live.headers, "Idempotency-Key": "k-patched"}
    first = await client.post(live.url("remember"), json={"content": "Meeting at 10"}, headers=headers)
    assert first.status_code == 201, first.text
    memory_id = first.json()["memory_id"]
    patched = await client.patch(
        live.url(f"memories/{memory_id}"), json={"content": "Meeting at 11"}, headers=live.headers
    )
    assert patched.status_code == 200, patched.text
    retry = await client.post(live.url("remember"), json={"content": "Meeting at 10"}, headers=headers)
    assert retry.status_code == 201, retry.text
    assert retry.json()["memory_id"] == memory_id


async def test_a_key_stored_before_fingerprints_replays_whatever_the_request(
    client: Any, owner: OwnerKey, db: asyncpg.Connection[Any]
) -> None:
    live = await start(client, owner)
    headers = {**live.headers, "Idempotency-Key": "k-legacy"}
    first = await client.post(live.url("remember"), json={"content": "stored long ago"}, headers=headers)
    assert first.status_code == 201, first.text
    await db.execute(
        "UPDATE memories SET idempotency_fingerprint = NULL WHERE memory_id = $1", uuid.UUID(first.json()["memory_id"])
    )
    retry = await client.post(live.url("remember"), json={"content": "something else"}, headers=headers)
    assert retry.status_code == 201, retry.text
    assert retry.json()["memory_id"] == first.json()["memory_id"]


async def test_a_batch_item_whose_key_was_used_with_another_memory_fails_the_whole_batch(
    client: Any, owner: OwnerKey, db: asyncpg.Connection[Any]
) -> None:
    live = await start(client, owner)
    url = live.url("batch-remember")
    first = await client.post(
        url, json={"memories": [{"content": "line 1", "idempotency_key": "import:1"}]}, headers=live.headers
    )
    assert first.status_code == 201, first.text

    with collected_logs() as logs:
        refused = await client.post(
            url,
            json={
                "memories": [
                    {"content": "line 0", "idempotency_key": "import:0"},
                    {"content": "line 1, edited", "idempotency_key": "import:1"},
                    {"content": "line 2"},
                ]
            },
            headers=live.headers,
        )
    body = assert_problem(refused, 422, "idempotency_key_reused")
    assert body["errors"][0]["field"] == "memories[1].idempotency_key"
    assert logs.errors() == []
    assert await stored(db, owner, live.agent_id) == ["line 1"]  # all or nothing: line 0 and 2 rolled back
    assert await stored_counter(client, live) == 1

    # Two items of one batch with one key and different memories: refused too.
    twins = await client.post(
        url,
        json={"memories": [{"content": "a", "idempotency_key": "dup"}, {"content": "b", "idempotency_key": "dup"}]},
        headers=live.headers,
    )
    assert assert_problem(twins, 422, "idempotency_key_reused")["errors"][0]["field"] == "memories[1].idempotency_key"

    # The same items again are a resumed import: the first memory's id, nothing stored twice.
    resumed = await client.post(
        url,
        json={
            "memories": [
                {"content": "line 1", "idempotency_key": "import:1"},
                {"content": "line 3", "idempotency_key": "import:3"},
            ]
        },
        headers=live.headers,
    )
    assert resumed.status_code == 201, resumed.text
    assert resumed.json()["stored"] == 1
    assert resumed.json()["already_stored"] == 1
    assert resumed.json()["memory_ids"][0] == first.json()["memory_ids"][0]
    assert await stored(db, owner, live.agent_id) == ["line 1", "line 3"]
    assert await stored_counter(client, live) == 2
