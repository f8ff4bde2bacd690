"""A session's end reaches the history with its true reason, time and counters when Postgres
fails in the middle, by the retry or, without one, by the expiry sweeper.

A server process reaches the run's database through a TCP proxy of the test's own, which
the test blocks (Postgres down) or cuts exactly when the history record of a superseded
session is sent. Redis ends the session first and keeps what it knows (a deactivated
session as a tombstone; the session an activation replaced, beside the new one until that
is first used), so that nothing is lost between the two writes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import asyncpg
import httpx
import pytest

from memanto_server.settings import Settings
from tests.helpers.http import API, activate, assert_problem, assert_unavailable, parse_z, token_headers
from tests.helpers.owners import OwnerKey, unique_agent
from tests.helpers.processes import running_server, settings_env
from tests.helpers.proxy import TcpProxy, tcp_proxy, through, upstream_of

pytestmark = pytest.mark.slow

TIMEOUT = httpx.Timeout(15.0)
SWEEP_SECONDS = 0.2
END_SESSION_SQL = b"end_reason = $4"  # only the statement that records a session's end says this


@pytest.fixture
def postgres(database_url: str) -> Iterator[TcpProxy]:
    with tcp_proxy(*upstream_of(database_url)) as proxy:
        yield proxy


@pytest.fixture
def base_url(settings: Settings, postgres: TcpProxy) -> Iterator[str]:
    env = settings_env(settings)
    env |= {
        "MEMANTO_DATABASE_URL": through(settings.database_url, postgres),
        "MEMANTO_DB_POOL_MIN": "1",
        "MEMANTO_DB_POOL_MAX": "1",
        "MEMANTO_DB_CONNECT_TIMEOUT": "1",
        "MEMANTO_SWEEP_INTERVAL_SECONDS": str(SWEEP_SECONDS),
    }
    with running_server(env) as url:
        yield url


async def used(client: httpx.AsyncClient, agent: str, token: str) -> None:
    """Two memories stored and one recalled in the session."""
    headers = token_headers(token)
    for content in ("the invoice is due", "the meeting moved"):
        stored = await client.post(f"{API}/agents/{agent}/remember", params={"content": content}, headers=headers)
        assert stored.status_code == 201, stored.text
    recalled = await client.post(f"{API}/agents/{agent}/recall", params={"query": "invoice"}, headers=headers)
    assert recalled.json()["count"] == 1


async def record(db: asyncpg.Connection[Any], session_id: str) -> asyncpg.Record:
    row = await db.fetchrow("SELECT * FROM sessions WHERE session_id = $1", session_id)
    assert row is not None
    return row


def counters(row: asyncpg.Record) -> tuple[Any, ...]:
    return (row["end_reason"], row["memories_stored"], row["memories_retrieved"])


async def until_recorded(db: asyncpg.Connection[Any], session_id: str, timeout: float = 10) -> asyncpg.Record:
    deadline = time.monotonic() + timeout
    while (row := await record(db, session_id))["end_reason"] is None:
        assert time.monotonic() < deadline, f"{session_id} not recorded within {timeout:g} s"
        await asyncio.sleep(0.05)
    return row


async def test_a_deactivate_that_failed_on_postgres_is_completed_by_its_retry(
    base_url: str, postgres: TcpProxy, owner: OwnerKey, db: asyncpg.Connection[Any]
) -> None:
    agent = unique_agent("pgdown")
    async with httpx.AsyncClient(base_url=base_url, timeout=TIMEOUT) as client:
        session = await activate(client, owner.key, agent)
        headers = token_headers(session["session_token"])
        await used(client, agent, session["session_token"])

        postgres.block()
        before = datetime.now().astimezone()
        assert_unavailable(await client.post(f"{API}/agents/{agent}/deactivate", headers=headers))
        # Ended in Redis already: the token no longer works.
        assert_problem(await client.get(f"{API}/session/current", headers=headers), 401, "session_ended")
        postgres.unblock()
        # Not recorded yet, but the history already tells the true end, from Redis.
        [pending] = (await client.get(f"{API}/agents/{agent}/sessions", headers=owner.headers)).json()["sessions"]
        assert (pending["end_reason"], pending["memories_stored"], pending["memories_retrieved"]) == (
            "deactivated",
            2,
            1,
        )
        assert (await record(db, session["session_id"]))["end_reason"] is None

        retried = await client.post(f"{API}/agents/{agent}/deactivate", headers=headers)
        assert retried.status_code == 200, retried.text
        ended = retried.json()
        assert (ended["session_id"], ended["memories_stored"], ended["memories_retrieved"]) == (
            session["session_id"],
            2,
            1,
        )
        # Ended when the first attempt ended it, not at the retry.
        assert before.replace(microsecond=0) <= parse_z(ended["ended_at"]) <= datetime.now().astimezone()
        again = await client.post(f"{API}/agents/{agent}/deactivate", headers=headers)
        assert_problem(again, 401, "session_ended")
        shown = await client.get(f"{API}/agents/{agent}/sessions", headers=owner.headers)
    row = await record(db, session["session_id"])
    assert counters(row) == ("deactivated", 2, 1)
    assert row["ended_at"].replace(microsecond=0) == parse_z(ended["ended_at"])
    [entry] = shown.json()["sessions"]
    assert (entry["end_reason"], entry["ended_at"], entry["memories_stored"]) == ("deactivated", ended["ended_at"], 2)
    assert pending["ended_at"] == entry["ended_at"]


async def test_without_a_retry_the_sweeper_records_the_true_end(
    base_url: str, postgres: TcpProxy, owner: OwnerKey, db: asyncpg.Connection[Any]
) -> None:
    agent = unique_agent("pgsweep")
    async with httpx.AsyncClient(base_url=base_url, timeout=TIMEOUT) as client:
        session = await activate(client, owner.key, agent, duration_hours=1.5 / 3600)
        await used(client, agent, session["session_token"])
        postgres.block()
        assert_unavailable(
            await client.post(f"{API}/agents/{agent}/deactivate", headers=token_headers(session["session_token"]))
        )
        deactivated_by = datetime.now().astimezone()
        postgres.unblock()
        # The recorded expiry passes; the sweeper finds the session's tombstone, not an expiry.
        row = await until_recorded(db, session["session_id"])
    assert counters(row) == ("deactivated", 2, 1)
    assert row["ended_at"] <= deactivated_by
    assert row["ended_at"] < row["expires_at"]


async def test_an_activation_that_failed_to_record_the_superseded_session_is_completed_by_its_retry(
    base_url: str, postgres: TcpProxy, owner: OwnerKey, db: asyncpg.Connection[Any]
) -> None:
    agent = unique_agent("pgsuper")
    async with httpx.AsyncClient(base_url=base_url, timeout=TIMEOUT) as client:
        first = await activate(client, owner.key, agent)
        await used(client, agent, first["session_token"])

        postgres.cut_before(END_SESSION_SQL)  # Postgres goes away as the superseded session is recorded
        assert_unavailable(await client.post(f"{API}/agents/{agent}/activate", headers=owner.headers))
        assert postgres.cuts == 1
        assert (await record(db, first["session_id"]))["end_reason"] is None  # not recorded, yet

        retried = await client.post(f"{API}/agents/{agent}/activate", headers=owner.headers)
        assert retried.status_code == 201, retried.text
        second = retried.json()
        assert second["superseded_session_id"] not in (None, first["session_id"])  # the lost activation's
        history = await client.get(f"{API}/agents/{agent}/sessions", headers=owner.headers)
    row = await record(db, first["session_id"])
    assert counters(row) == ("superseded", 2, 1)
    lost = await record(db, second["superseded_session_id"])
    assert counters(lost) == ("superseded", 0, 0)
    assert row["ended_at"] == lost["created_at"]  # superseded when the lost activation made its session live
    reasons = {s["session_id"]: s["end_reason"] for s in history.json()["sessions"]}
    assert reasons == {
        second["session_id"]: "active",
        second["superseded_session_id"]: "superseded",
        first["session_id"]: "superseded",
    }


async def test_without_a_retry_the_sweeper_records_the_superseded_session(
    base_url: str, postgres: TcpProxy, owner: OwnerKey, db: asyncpg.Connection[Any]
) -> None:
    agent = unique_agent("pgsuper")
    async with httpx.AsyncClient(base_url=base_url, timeout=TIMEOUT) as client:
        first = await activate(client, owner.key, agent)
        await used(client, agent, first["session_token"])
        postgres.cut_before(END_SESSION_SQL)
        failed = await client.post(
            f"{API}/agents/{agent}/activate", params={"duration_hours": 1 / 3600}, headers=owner.headers
        )
        assert_unavailable(failed)
        # Before anyone records it, the history already tells how it ended (from Redis).
        shown = await client.get(f"{API}/agents/{agent}/sessions", headers=owner.headers)
        by_id = {s["session_id"]: s for s in shown.json()["sessions"]}
        assert (by_id[first["session_id"]]["end_reason"], by_id[first["session_id"]]["memories_stored"]) == (
            "superseded",
            2,
        )
        # The failed activation's session runs out; recording it, the sweeper records the one it replaced.
        row = await until_recorded(db, first["session_id"])
    assert counters(row) == ("superseded", 2, 1)
