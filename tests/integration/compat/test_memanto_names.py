"""REST answers carry MEMANTO's field names beside ours, with the same meaning (ours unchanged)."""

from __future__ import annotations

from typing import Any

from tests.helpers.http import API, parse_z, token_headers
from tests.helpers.owners import OwnerKey, start


async def test_session_answers_carry_memantos_names(client: Any, owner: OwnerKey) -> None:
    live = await start(client, owner)
    activated = live.session
    assert activated["namespace"] == f"memanto_agent_{live.agent_id}"
    assert activated["started_at"] == activated["created_at"]
    current = (await client.get(f"{API}/session/current", headers=live.headers)).json()
    assert (current["namespace"], current["started_at"]) == (activated["namespace"], activated["created_at"])
    status = (await client.get(f"{API}/status", headers=token_headers(live.token, owner.key))).json()
    assert status["namespace"] == activated["namespace"]

    stored = await client.post(
        live.url("remember"), json={"content": "Alias check", "type": None}, headers=live.headers
    )
    assert stored.status_code == 201, stored.text
    assert stored.json()["namespace"] == activated["namespace"]
    assert stored.json()["type"] == "fact"
    batch = await client.post(
        live.url("batch-remember"),
        json={"memories": [{"content": "One", "idempotency_key": "k1"}, {"content": "Two"}]},
        headers=live.headers,
    )
    assert (batch.json()["total_submitted"], batch.json()["successful"], batch.json()["failed"]) == (2, 2, 0)
    again = await client.post(
        live.url("batch-remember"),
        json={"memories": [{"content": "One", "idempotency_key": "k1"}]},
        headers=live.headers,
    )
    assert (again.json()["stored"], again.json()["already_stored"], again.json()["successful"]) == (0, 1, 1)

    recalled = (await client.post(live.url("recall"), json={"query": "alias"}, headers=live.headers)).json()
    item = recalled["memories"][0]
    assert (item["id"], item["text"]) == (item["memory_id"], item["content"])
    answered = (
        await client.post(live.url("answer"), json={"question": "Which alias check?"}, headers=live.headers)
    ).json()
    assert answered["sources"][0]["id"] == answered["sources"][0]["memory_id"]

    ended = (await client.post(live.url("deactivate"), headers=live.headers)).json()
    assert ended["memories_created"] == ended["memories_stored"] == 3
    assert ended["duration_hours"] == round(ended["duration_seconds"] / 3600, 4)
    assert ended["namespace"] == activated["namespace"]
    assert parse_z(ended["started_at"]) == parse_z(activated["created_at"])
