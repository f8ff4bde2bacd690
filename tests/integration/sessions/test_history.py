"""Session history (GET /agents/{id}/sessions) and the recording of expired sessions."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest
from litestar.testing import AsyncTestClient

from memanto_server.main import create_app
from memanto_server.settings import Settings
from tests.helpers.http import API, activate, assert_problem, token_headers
from tests.helpers.owners import OwnerKey, unique_agent
from tests.helpers.processes import running_servers, settings_env

ONE_SECOND = 1 / 3600  # in hours


@pytest.fixture
async def fast_sweeping_client(settings: Settings) -> AsyncIterator[AsyncTestClient[Any]]:
    fast = msgspec.structs.replace(settings, sweep_interval_seconds=0.5)
    async with AsyncTestClient(app=create_app(fast)) as test_client:
        yield test_client


async def wait_for(predicate: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.2)


async def test_history_lists_every_session_newest_first_with_reasons(client: Any, owner: OwnerKey) -> None:
    agent = unique_agent()
    first = await activate(client, owner.key, agent)
    second = await activate(client, owner.key, agent)  # supersedes the first
    headers = token_headers(second["session_token"])
    await client.post(f"{API}/agents/{agent}/remember", params={"content": "kept across sessions"}, headers=headers)
    await client.post(f"{API}/agents/{agent}/deactivate", headers=headers)
    third = await activate(client, owner.key, agent)
    await client.post(
        f"{API}/agents/{agent}/remember",
        params={"content": "live one"},
        headers=token_headers(third["session_token"]),
    )

    response = await client.get(f"{API}/agents/{agent}/sessions", headers=owner.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["agent_id"] == agent
    assert body["count"] == 3
    assert body["next_cursor"] is None
    by_id = {s["session_id"]: s for s in body["sessions"]}
    assert [s["session_id"] for s in body["sessions"]] == [
        third["session_id"],
        second["session_id"],
        first["session_id"],
    ]
    assert by_id[first["session_id"]]["end_reason"] == "superseded"
    assert by_id[second["session_id"]]["end_reason"] == "deactivated"
    assert by_id[second["session_id"]]["memories_stored"] == 1
    live = by_id[third["session_id"]]
    assert live["end_reason"] == "active"
    assert live["status"] == "active"
    assert live["ended_at"] is None
    assert live["memories_stored"] == 1  # live counters come from Redis


async def test_history_pages_without_gaps_or_duplicates(client: Any, owner: OwnerKey) -> None:
    agent = unique_agent()
    ids = [(await activate(client, owner.key, agent))["session_id"] for _ in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get(f"{API}/agents/{agent}/sessions", params=params, headers=owner.headers)).json()
        assert page["count"] <= 2
        seen += [s["session_id"] for s in page["sessions"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))


async def test_history_of_unknown_or_foreign_agent_is_404(client: Any, owner: OwnerKey, make_owner: Any) -> None:
    agent = unique_agent()
    await activate(client, owner.key, agent)
    other = await make_owner("other")
    assert_problem(await client.get(f"{API}/agents/{agent}/sessions", headers=other.headers), 404, "agent_not_found")
    assert_problem(
        await client.get(f"{API}/agents/{unique_agent()}/sessions", headers=owner.headers), 404, "agent_not_found"
    )
    bad_cursor = await client.get(f"{API}/agents/{agent}/sessions", params={"cursor": "nope"}, headers=owner.headers)
    assert_problem(bad_cursor, 422, "validation_error")


async def test_expired_session_is_recorded_with_exact_counters(
    fast_sweeping_client: Any, owner: OwnerKey, db: asyncpg.Connection[Any]
) -> None:
    client = fast_sweeping_client
    agent = unique_agent()
    session = await activate(client, owner.key, agent, duration_hours=2 * ONE_SECOND)
    headers = token_headers(session["session_token"])
    for text in ("alpha note", "beta note", "gamma note"):
        assert (
            await client.post(f"{API}/agents/{agent}/remember", params={"content": text}, headers=headers)
        ).status_code == 201
    recalled = await client.post(f"{API}/agents/{agent}/recall", params={"query": "note", "limit": 2}, headers=headers)
    assert recalled.json()["count"] == 2

    async def recorded() -> bool:
        row = await db.fetchrow("SELECT end_reason FROM sessions WHERE session_id = $1", session["session_id"])
        return row is not None and row["end_reason"] == "expired"

    await wait_for(recorded, timeout=15)
    row = await db.fetchrow("SELECT * FROM sessions WHERE session_id = $1", session["session_id"])
    assert row["memories_stored"] == 3
    assert row["memories_retrieved"] == 2
    assert row["ended_at"] == row["expires_at"]
    assert_problem(await client.get(f"{API}/session/current", headers=headers), 401, "session_expired")

    history = (await client.get(f"{API}/agents/{agent}/sessions", headers=owner.headers)).json()
    record = history["sessions"][0]
    assert record["end_reason"] == "expired"
    assert record["status"] == "ended"
    assert record["memories_stored"] == 3
    assert record["memories_retrieved"] == 2


async def test_extended_session_is_not_recorded_as_expired(
    fast_sweeping_client: Any, owner: OwnerKey, db: asyncpg.Connection[Any]
) -> None:
    client = fast_sweeping_client
    agent = unique_agent()
    session = await activate(client, owner.key, agent, duration_hours=ONE_SECOND)
    headers = token_headers(session["session_token"])
    extended = await client.post(f"{API}/session/extend", params={"extend_hours": 1}, headers=headers)
    assert extended.status_code == 200
    await asyncio.sleep(2.5)  # past the original expiry, several sweeps later
    row = await db.fetchrow("SELECT end_reason, expires_at FROM sessions WHERE session_id = $1", session["session_id"])
    assert row["end_reason"] is None
    assert (await client.get(f"{API}/session/current", headers=headers)).status_code == 200


async def test_reactivation_records_an_unswept_expired_session(
    client: Any, owner: OwnerKey, db: asyncpg.Connection[Any]
) -> None:
    # `client` sweeps every 15 s; the new activation notices the expired session first.
    agent = unique_agent()
    session = await activate(client, owner.key, agent, duration_hours=ONE_SECOND)
    headers = token_headers(session["session_token"])
    await client.post(f"{API}/agents/{agent}/remember", params={"content": "before expiry"}, headers=headers)
    await asyncio.sleep(1.3)
    again = await activate(client, owner.key, agent)
    assert again["superseded_session_id"] is None  # it had already run out
    row = await db.fetchrow("SELECT * FROM sessions WHERE session_id = $1", session["session_id"])
    assert row["end_reason"] == "expired"
    assert row["memories_stored"] == 1


@pytest.mark.slow
async def test_each_expiry_is_recorded_exactly_once_by_several_instances(
    settings: Settings, owner: OwnerKey, db: asyncpg.Connection[Any]
) -> None:
    # Count every write that sets an end reason, whoever makes it.
    await db.execute(
        """
        CREATE TABLE IF NOT EXISTS test_end_writes (session_id text, end_reason text);
        CREATE OR REPLACE FUNCTION test_count_end_writes() RETURNS trigger AS $$
        BEGIN
            INSERT INTO test_end_writes VALUES (NEW.session_id, NEW.end_reason);
            RETURN NEW;
        END $$ LANGUAGE plpgsql;
        DROP TRIGGER IF EXISTS test_count_end_writes ON sessions;
        CREATE TRIGGER test_count_end_writes AFTER UPDATE OF end_reason ON sessions
            FOR EACH ROW WHEN (OLD.end_reason IS NULL AND NEW.end_reason IS NOT NULL)
            EXECUTE FUNCTION test_count_end_writes();
        """
    )
    env = settings_env(msgspec.structs.replace(settings, sweep_interval_seconds=0.3))
    agents = [unique_agent("exp") for _ in range(12)]
    try:
        with running_servers(env, 3) as (a, b, c):
            async with httpx.AsyncClient(timeout=15) as http:
                sessions = {}
                for i, agent in enumerate(agents):
                    base = (a, b, c)[i % 3]
                    created = await http.post(
                        f"{base}{API}/agents/{agent}/activate",
                        params={"duration_hours": ONE_SECOND},
                        headers=owner.headers,
                    )
                    body = created.json()
                    sessions[body["session_id"]] = i % 4
                    for n in range(i % 4):
                        stored = await http.post(
                            f"{base}{API}/agents/{agent}/remember",
                            params={"content": f"note {n}"},
                            headers=token_headers(body["session_token"]),
                        )
                        assert stored.status_code == 201

                async def all_recorded() -> bool:
                    count = await db.fetchval(
                        "SELECT count(*) FROM sessions WHERE session_id = ANY($1) AND end_reason = 'expired'",
                        list(sessions),
                    )
                    return count == len(sessions)

                await wait_for(all_recorded, timeout=20)
                await asyncio.sleep(1.5)  # more sweeps by every instance: nothing may be written again
        writes = await db.fetch(
            "SELECT session_id, count(*) AS n FROM test_end_writes WHERE session_id = ANY($1) GROUP BY session_id",
            list(sessions),
        )
        assert {r["session_id"]: r["n"] for r in writes} == dict.fromkeys(sessions, 1)
        rows = await db.fetch(
            "SELECT session_id, memories_stored FROM sessions WHERE session_id = ANY($1)", list(sessions)
        )
        assert {r["session_id"]: r["memories_stored"] for r in rows} == sessions
    finally:
        await db.execute("DROP TRIGGER IF EXISTS test_count_end_writes ON sessions")
