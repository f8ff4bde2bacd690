"""The session life cycle and its rules (api.md, Sessions)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest

from tests.helpers.http import API, activate, assert_problem, parse_z, token_headers
from tests.helpers.owners import OwnerKey, unique_agent


async def test_activate_creates_agent_and_returns_contract_fields(client: Any, owner: OwnerKey) -> None:
    agent = unique_agent()
    body = await activate(client, owner.key, agent)
    assert body["agent_id"] == agent
    assert body["status"] == "active"
    assert body["session_id"].startswith("sess_")
    assert body["expires_in_seconds"] == 6 * 3600
    assert body["superseded_session_id"] is None
    assert parse_z(body["expires_at"]) - parse_z(body["created_at"]) == timedelta(hours=6)
    payload = jwt.decode(body["session_token"], options={"verify_signature": False})
    assert payload["agent_id"] == agent
    assert payload["session_id"] == body["session_id"]
    assert payload["expires_at"] == body["expires_at"]
    assert payload["owner_id"] == owner.owner_id
    assert payload["exp"] - payload["iat"] == 168 * 3600
    assert "kid" in jwt.get_unverified_header(body["session_token"])

    shown = await client.get(f"{API}/agents/{agent}", headers=owner.headers)
    assert shown.status_code == 200
    assert shown.json()["active_session"]["session_id"] == body["session_id"]


@pytest.mark.parametrize(
    ("how", "expected_seconds"),
    [("query", 9000), ("body", 5400)],
)
async def test_activate_duration_as_query_or_body(
    client: Any, owner: OwnerKey, how: str, expected_seconds: int
) -> None:
    agent = unique_agent()
    url = f"{API}/agents/{agent}/activate"
    if how == "query":
        response = await client.post(url, params={"duration_hours": 2.5}, headers=owner.headers)
    else:
        response = await client.post(url, json={"duration_hours": 1.5, "metadata": {"k": 1}}, headers=owner.headers)
    assert response.status_code == 201, response.text
    assert response.json()["expires_in_seconds"] == expected_seconds


@pytest.mark.parametrize("hours", ["0", "-1", "24.01", "100", "abc"])
async def test_activate_rejects_bad_duration_and_changes_nothing(client: Any, owner: OwnerKey, hours: str) -> None:
    agent = unique_agent()
    response = await client.post(
        f"{API}/agents/{agent}/activate", params={"duration_hours": hours}, headers=owner.headers
    )
    body = assert_problem(response, 422, "validation_error")
    assert body["errors"][0]["field"] == "duration_hours"
    assert (await client.get(f"{API}/agents/{agent}", headers=owner.headers)).status_code == 404


async def test_activation_supersedes_the_live_session(client: Any, owner: OwnerKey) -> None:
    agent = unique_agent()
    first = await activate(client, owner.key, agent)
    second = await activate(client, owner.key, agent)
    assert second["superseded_session_id"] == first["session_id"]
    old = await client.get(f"{API}/session/current", headers=token_headers(first["session_token"]))
    assert_problem(old, 401, "session_superseded")
    assert "WWW-Authenticate" in old.headers
    new = await client.get(f"{API}/session/current", headers=token_headers(second["session_token"]))
    assert new.status_code == 200
    assert new.json()["session_id"] == second["session_id"]


async def test_current_and_status_alias(client: Any, owner: OwnerKey) -> None:
    agent = unique_agent()
    session = await activate(client, owner.key, agent, duration_hours=1)
    for path in ("/session/current", "/status"):
        response = await client.get(f"{API}{path}", headers=token_headers(session["session_token"], owner.key))
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["session_id"] == session["session_id"]
        assert body["agent_id"] == agent
        assert body["status"] == "active"
        assert body["expires_at"] == session["expires_at"]
        assert 3590 <= body["time_remaining_seconds"] <= 3600
        assert body["time_remaining_minutes"] == body["time_remaining_seconds"] // 60
        assert body["memories_stored"] == 0
        assert body["memories_retrieved"] == 0
        assert body["extensions"] == 0
        assert response.headers["X-Session-Expires-At"] == session["expires_at"]


@pytest.mark.parametrize("param", ["extend_hours", "additional_hours"])
async def test_extend_keeps_the_token_and_adds_hours(client: Any, owner: OwnerKey, param: str) -> None:
    session = await activate(client, owner.key, unique_agent(), duration_hours=1)
    headers = token_headers(session["session_token"])
    response = await client.post(f"{API}/session/extend", params={param: 6}, headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["previous_expires_at"] == session["expires_at"]
    assert parse_z(body["new_expires_at"]) - parse_z(session["expires_at"]) == timedelta(hours=6)
    assert body["expires_at"] == body["new_expires_at"]
    assert body["hours_added"] == 6
    assert 6 * 60 + 58 <= body["time_remaining_minutes"] <= 7 * 60
    assert response.headers["X-Session-Expires-At"] == body["new_expires_at"]
    # Same token, new expiry.
    current = await client.get(f"{API}/session/current", headers=headers)
    assert current.json()["expires_at"] == body["new_expires_at"]
    assert current.json()["extensions"] == 1


async def test_extend_in_json_body(client: Any, owner: OwnerKey) -> None:
    session = await activate(client, owner.key, unique_agent(), duration_hours=1)
    response = await client.post(
        f"{API}/session/extend", json={"extend_hours": 0.5}, headers=token_headers(session["session_token"])
    )
    assert response.status_code == 200, response.text
    assert parse_z(response.json()["new_expires_at"]) - parse_z(session["expires_at"]) == timedelta(minutes=30)


@pytest.mark.parametrize("params", [{"extend_hours": 0}, {"extend_hours": 25}, {"extend_hours": "x"}, {}])
async def test_extend_rejects_bad_hours(client: Any, owner: OwnerKey, params: dict[str, Any]) -> None:
    session = await activate(client, owner.key, unique_agent(), duration_hours=1)
    headers = token_headers(session["session_token"])
    response = await client.post(f"{API}/session/extend", params=params, headers=headers)
    assert_problem(response, 422, "validation_error")
    current = await client.get(f"{API}/session/current", headers=headers)
    assert current.json()["expires_at"] == session["expires_at"]


async def test_extend_never_passes_the_total_lifetime(client: Any, owner: OwnerKey) -> None:
    session = await activate(client, owner.key, unique_agent(), duration_hours=24)
    headers = token_headers(session["session_token"])
    for _ in range(6):  # 24 + 6 * 24 = 168
        response = await client.post(f"{API}/session/extend", params={"extend_hours": 24}, headers=headers)
        assert response.status_code == 200, response.text
    over = await client.post(f"{API}/session/extend", params={"extend_hours": 1}, headers=headers)
    body = assert_problem(over, 422, "validation_error")
    assert "0.00 more hours" in body["detail"]
    current = await client.get(f"{API}/session/current", headers=headers)
    assert parse_z(current.json()["expires_at"]) - parse_z(session["created_at"]) == timedelta(hours=168)


async def test_deactivate_with_token_summarises_and_kills_token(client: Any, owner: OwnerKey) -> None:
    agent = unique_agent()
    session = await activate(client, owner.key, agent)
    headers = token_headers(session["session_token"], owner.key)
    for text in ("one", "two", "three"):
        stored = await client.post(f"{API}/agents/{agent}/remember", params={"content": text}, headers=headers)
        assert stored.status_code == 201
    recalled = await client.post(f"{API}/agents/{agent}/recall", params={"query": "two"}, headers=headers)
    assert recalled.json()["count"] == 1

    response = await client.post(f"{API}/agents/{agent}/deactivate", headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["session_id"] == session["session_id"]
    assert body["status"] == "ended"
    assert body["end_reason"] == "deactivated"
    assert body["memories_stored"] == 3
    assert body["memories_retrieved"] == 1
    assert body["started_at"] == session["created_at"]
    assert body["duration_seconds"] >= 0
    assert isinstance(body["duration"], str)

    after = await client.get(f"{API}/session/current", headers=headers)
    assert_problem(after, 401, "session_ended")
    again = await client.post(f"{API}/agents/{agent}/deactivate", headers=headers)
    assert_problem(again, 401, "session_ended")


async def test_deactivate_with_key_alone(client: Any, owner: OwnerKey) -> None:
    agent = unique_agent()
    session = await activate(client, owner.key, agent)
    response = await client.post(f"{API}/agents/{agent}/deactivate", headers=owner.headers)
    assert response.status_code == 200, response.text
    assert response.json()["session_id"] == session["session_id"]
    none_left = await client.post(f"{API}/agents/{agent}/deactivate", headers=owner.headers)
    assert_problem(none_left, 404, "no_active_session")
    unknown = await client.post(f"{API}/agents/{unique_agent()}/deactivate", headers=owner.headers)
    assert_problem(unknown, 404, "agent_not_found")


async def test_deactivate_other_agent_with_token_is_forbidden(client: Any, owner: OwnerKey) -> None:
    mine = await activate(client, owner.key, unique_agent())
    other = unique_agent()
    await activate(client, owner.key, other)
    response = await client.post(f"{API}/agents/{other}/deactivate", headers=token_headers(mine["session_token"]))
    assert_problem(response, 403, "agent_mismatch")
    still = await client.get(f"{API}/agents/{other}", headers=owner.headers)
    assert still.json()["active_session"] is not None


async def test_session_expires_by_redis_ttl(client: Any, owner: OwnerKey) -> None:
    session = await activate(client, owner.key, unique_agent(), duration_hours=1 / 3600)  # one second
    headers = token_headers(session["session_token"])
    assert (await client.get(f"{API}/session/current", headers=headers)).status_code == 200
    await asyncio.sleep(1.3)
    assert_problem(await client.get(f"{API}/session/current", headers=headers), 401, "session_expired")
    assert_problem(
        await client.post(f"{API}/session/extend", params={"extend_hours": 1}, headers=headers), 401, "session_expired"
    )


async def test_a_session_past_its_expiry_is_not_live_while_redis_keeps_its_counters(
    client: Any, owner: OwnerKey
) -> None:
    agent = unique_agent()
    session = await activate(client, owner.key, agent, duration_hours=1 / 3600)  # one second
    headers = token_headers(session["session_token"])
    remembered = await client.post(f"{API}/agents/{agent}/remember", params={"content": "a note"}, headers=headers)
    assert remembered.status_code == 201, remembered.text
    await asyncio.sleep(1.3)  # past the expiry, well within the retention window
    shown = await client.get(f"{API}/agents/{agent}", headers=owner.headers)
    assert shown.json()["active_session"] is None
    assert_problem(await client.post(f"{API}/agents/{agent}/deactivate", headers=headers), 401, "session_expired")
    assert_problem(
        await client.post(f"{API}/agents/{agent}/deactivate", headers=owner.headers), 404, "no_active_session"
    )
    history = (await client.get(f"{API}/agents/{agent}/sessions", headers=owner.headers)).json()
    assert [(s["end_reason"], s["memories_stored"]) for s in history["sessions"]] == [("expired", 1)]
    again = await activate(client, owner.key, agent)
    assert again["superseded_session_id"] is None


async def test_counters_are_exact_under_concurrency(client: Any, owner: OwnerKey) -> None:
    agent = unique_agent()
    session = await activate(client, owner.key, agent)
    headers = token_headers(session["session_token"])
    writes = [
        client.post(f"{API}/agents/{agent}/remember", params={"content": f"parallel note {i}"}, headers=headers)
        for i in range(25)
    ]
    assert all(r.status_code == 201 for r in await asyncio.gather(*writes))
    reads = [
        client.post(f"{API}/agents/{agent}/recall", params={"query": "parallel"}, headers=headers) for _ in range(4)
    ]
    counts = [r.json()["count"] for r in await asyncio.gather(*reads)]
    current = (await client.get(f"{API}/session/current", headers=headers)).json()
    assert current["memories_stored"] == 25
    assert current["memories_retrieved"] == sum(counts) == 40


async def test_history_rows_record_how_sessions_ended(client: Any, owner: OwnerKey, db: Any) -> None:
    agent = unique_agent()
    first = await activate(client, owner.key, agent)
    second = await activate(client, owner.key, agent)
    await client.post(f"{API}/agents/{agent}/deactivate", headers=token_headers(second["session_token"]))
    rows = {
        r["session_id"]: r["end_reason"]
        for r in await db.fetch("SELECT session_id, end_reason FROM sessions WHERE agent_id = $1", agent)
    }
    assert rows == {first["session_id"]: "superseded", second["session_id"]: "deactivated"}
    assert datetime.now(UTC)  # timezone-aware clock used throughout


async def test_activation_metadata_with_nul_is_422_and_starts_nothing(client: Any, owner: OwnerKey) -> None:
    agent = unique_agent()
    response = await client.post(
        f"{API}/agents/{agent}/activate", json={"metadata": {"note": "a\x00b"}}, headers=owner.headers
    )
    body = assert_problem(response, 422, "validation_error")
    assert body["errors"][0]["field"] == "metadata"
    assert (await client.get(f"{API}/agents/{agent}", headers=owner.headers)).status_code == 404
