"""Timeouts everywhere: a stuck backend gives a prompt 503 with Retry-After, never a hung request.

- Postgres `statement_timeout` (MEMANTO_DB_STATEMENT_TIMEOUT): a statement waiting on a
  lock the test holds is cancelled by Postgres;
- pool acquire timeout (MEMANTO_DB_ACQUIRE_TIMEOUT): with every pooled connection busy,
  the next request does not queue forever;
- Redis socket timeout (MEMANTO_REDIS_TIMEOUT): a Redis that accepts connections but
  answers nothing (SIGSTOP) is given up on.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
import httpx
import pytest

from memanto_server.settings import Settings
from tests.helpers.http import API, activate, assert_unavailable, token_headers
from tests.helpers.owners import OwnerKey, unique_agent
from tests.helpers.postgres import agent_row_locked, wait_until_blocked
from tests.helpers.processes import private_redis, running_server, settings_env

pytestmark = pytest.mark.slow

TIMEOUT = httpx.Timeout(30.0)


async def timed(request: Any) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await request
    return response, time.monotonic() - started


async def test_statement_longer_than_the_statement_timeout_answers_503(
    settings: Settings, database_url: str, owner: OwnerKey, db: asyncpg.Connection[Any]
) -> None:
    env = settings_env(settings)
    env["MEMANTO_DB_STATEMENT_TIMEOUT"] = "1"
    agent = unique_agent("stmt")
    with running_server(env) as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=TIMEOUT) as client:
            session = await activate(client, owner.key, agent)
            headers = token_headers(session["session_token"])
            async with agent_row_locked(database_url, owner.owner_id, agent):
                response, elapsed = await timed(
                    client.post(f"{API}/agents/{agent}/remember", json={"content": "blocked"}, headers=headers)
                )
            assert_unavailable(response)
            assert "Postgres" in response.json()["detail"]
            assert 0.9 < elapsed < 5, elapsed

            # Nothing was stored or counted, and the next write goes through.
            current = await client.get(f"{API}/session/current", headers=headers)
            assert current.status_code == 200, current.text
            assert current.json()["memories_stored"] == 0
            again = await client.post(f"{API}/agents/{agent}/remember", json={"content": "unblocked"}, headers=headers)
            assert again.status_code == 201, again.text
    contents = await db.fetch(
        "SELECT content FROM memories WHERE owner_id = $1::uuid AND agent_id = $2", owner.owner_id, agent
    )
    assert [r["content"] for r in contents] == ["unblocked"]


async def test_pool_exhausted_answers_503_after_the_acquire_timeout(
    settings: Settings, database_url: str, owner: OwnerKey, db: asyncpg.Connection[Any]
) -> None:
    env = settings_env(settings)
    env |= {"MEMANTO_DB_POOL_MIN": "1", "MEMANTO_DB_POOL_MAX": "1", "MEMANTO_DB_ACQUIRE_TIMEOUT": "0.5"}
    agent = unique_agent("pool")
    with running_server(env) as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=TIMEOUT) as client:
            session = await activate(client, owner.key, agent)
            headers = token_headers(session["session_token"])
            async with agent_row_locked(database_url, owner.owner_id, agent) as holder:
                # This request takes the pool's only connection and waits on the lock ...
                blocked = asyncio.create_task(
                    client.post(f"{API}/agents/{agent}/remember", json={"content": "first"}, headers=headers)
                )
                await wait_until_blocked(db, holder)
                # ... so the next ones wait 0.5 s for a connection, then get a 503.
                recall, elapsed = await timed(
                    client.post(f"{API}/agents/{agent}/recall", params={"query": "first"}, headers=headers)
                )
                assert_unavailable(recall)
                assert 0.4 < elapsed < 3, elapsed
                assert_unavailable(await client.get(f"{API}/agents", headers=owner.headers))
                assert not blocked.done()
            # The lock is released: the first request completes, and the pool serves again.
            first = await blocked
            assert first.status_code == 201, first.text
            recall = await client.post(f"{API}/agents/{agent}/recall", params={"query": "first"}, headers=headers)
            assert recall.status_code == 200, recall.text
            assert [m["memory_id"] for m in recall.json()["memories"]] == [first.json()["memory_id"]]


async def test_redis_that_stops_answering_gives_503_after_the_socket_timeout(
    settings: Settings, owner: OwnerKey
) -> None:
    with private_redis() as own_redis:
        env = settings_env(settings)
        env |= {"MEMANTO_REDIS_URL": own_redis.url, "MEMANTO_REDIS_TIMEOUT": "0.5"}
        with running_server(env) as base_url:
            async with httpx.AsyncClient(base_url=base_url, timeout=TIMEOUT) as client:
                session = await activate(client, owner.key, unique_agent("frozen"))
                headers = token_headers(session["session_token"])
                own_redis.pause()  # connections stay open; nothing is answered
                try:
                    response, elapsed = await timed(client.get(f"{API}/session/current", headers=headers))
                    assert_unavailable(response)
                    assert "Redis" in response.json()["detail"]
                    assert elapsed < 4, elapsed
                finally:
                    own_redis.resume()
                deadline = time.monotonic() + 10
                while (current := await client.get(f"{API}/session/current", headers=headers)).status_code == 503:
                    assert time.monotonic() < deadline, "no recovery 10 s after Redis answered again"
                    await asyncio.sleep(0.05)
                assert current.status_code == 200, current.text
                assert current.json()["session_id"] == session["session_id"]
