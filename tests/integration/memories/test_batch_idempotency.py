"""Per-item idempotency keys in batch-remember: a resumed or retried batch stores nothing twice."""

from __future__ import annotations

from typing import Any

import asyncpg

from tests.helpers.http import API, activate, assert_problem, token_headers
from tests.helpers.owners import OwnerKey, unique_agent


async def _stored(client: Any, headers: dict[str, str]) -> int:
    return int((await client.get(f"{API}/session/current", headers=headers)).json()["memories_stored"])


async def test_repeated_keys_are_skipped_and_answer_the_first_ids(
    client: Any, owner: OwnerKey, db: asyncpg.Connection[Any]
) -> None:
    agent = unique_agent()
    session = await activate(client, owner.key, agent)
    headers = token_headers(session["session_token"])
    url = f"{API}/agents/{agent}/batch-remember"
    first = await client.post(
        url,
        json={"memories": [{"content": f"line {i}", "idempotency_key": f"import:{i}"} for i in range(5)]},
        headers=headers,
    )
    assert first.status_code == 201, first.text
    assert first.json()["stored"] == 5
    assert first.json()["already_stored"] == 0

    # Resume: items 3-4 were stored before, 5-7 are new; one item has no key at all.
    resumed = await client.post(
        url,
        json={
            "memories": [
                *({"content": f"line {i}", "idempotency_key": f"import:{i}"} for i in range(3, 8)),
                {"content": "no key"},
            ]
        },
        headers=headers,
    )
    assert resumed.status_code == 201, resumed.text
    body = resumed.json()
    assert body["stored"] == 4
    assert body["already_stored"] == 2
    assert body["memory_ids"][:2] == first.json()["memory_ids"][3:5]
    assert len(set(body["memory_ids"])) == 6

    count = await db.fetchval("SELECT count(*) FROM memories WHERE agent_id = $1", agent)
    assert count == 9
    assert await _stored(client, headers) == 9


async def test_a_key_repeated_within_one_batch_is_stored_once(
    client: Any, owner: OwnerKey, db: asyncpg.Connection[Any]
) -> None:
    agent = unique_agent()
    session = await activate(client, owner.key, agent)
    headers = token_headers(session["session_token"])
    response = await client.post(
        f"{API}/agents/{agent}/batch-remember",
        json={"memories": [{"content": "same", "idempotency_key": "k"}, {"content": "same", "idempotency_key": "k"}]},
        headers=headers,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["stored"] == 1
    assert body["memory_ids"][0] == body["memory_ids"][1]
    assert await db.fetchval("SELECT count(*) FROM memories WHERE agent_id = $1", agent) == 1
    assert await _stored(client, headers) == 1


async def test_batch_keys_and_single_remember_keys_are_one_namespace(client: Any, owner: OwnerKey) -> None:
    agent = unique_agent()
    session = await activate(client, owner.key, agent)
    headers = token_headers(session["session_token"])
    single = await client.post(
        f"{API}/agents/{agent}/remember", json={"content": "one"}, headers={**headers, "Idempotency-Key": "shared"}
    )
    batch = await client.post(
        f"{API}/agents/{agent}/batch-remember",
        json={"memories": [{"content": "one", "idempotency_key": "shared"}]},
        headers=headers,
    )
    assert batch.json()["memory_ids"] == [single.json()["memory_id"]]
    assert batch.json()["stored"] == 0


async def test_an_overlong_item_key_is_422_naming_the_item(client: Any, owner: OwnerKey) -> None:
    agent = unique_agent()
    session = await activate(client, owner.key, agent)
    response = await client.post(
        f"{API}/agents/{agent}/batch-remember",
        json={"memories": [{"content": "ok"}, {"content": "x", "idempotency_key": "k" * 201}]},
        headers=token_headers(session["session_token"]),
    )
    body = assert_problem(response, 422, "validation_error")
    assert body["errors"][0]["field"] == "memories[1].idempotency_key"
