"""Holding Postgres rows locked, to make a request wait where a test needs it to."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg


@contextlib.asynccontextmanager
async def agent_row_locked(database_url: str, owner_id: str, agent_id: str) -> AsyncIterator[int]:
    """Hold the agent's row `FOR UPDATE` in a transaction of the test's own, until the block ends.

    Every write that references the agent (a memory's foreign-key check takes `FOR KEY SHARE`
    on its row) waits meanwhile: a request made slow without any test-only code in the app.
    Yields the backend pid that holds the lock (see `wait_until_blocked`).
    """
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():
            locked = await conn.fetchval(
                "SELECT agent_id FROM agents WHERE owner_id = $1::uuid AND agent_id = $2 FOR UPDATE", owner_id, agent_id
            )
            assert locked == agent_id, f"no agent {agent_id} to lock"
            yield await conn.fetchval("SELECT pg_backend_pid()")
    finally:
        await conn.close()


async def wait_until_blocked(conn: asyncpg.Connection[Any], holder_pid: int, timeout: float = 10) -> None:
    """Until some other backend waits for a lock that `holder_pid` holds."""
    deadline = time.monotonic() + timeout
    while not await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE $1::int = ANY(pg_blocking_pids(pid)))", holder_pid
    ):
        if time.monotonic() > deadline:
            raise AssertionError(f"no statement waited for the lock within {timeout:g} s")
        await asyncio.sleep(0.02)
