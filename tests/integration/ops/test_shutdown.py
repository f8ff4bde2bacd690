"""Graceful shutdown: on SIGTERM the server stops accepting, finishes what is in flight,
closes its pools and exits, as `docker compose stop` or a rolling deploy would ask it to.

The request in flight is a `remember` that waits on a row lock the test holds from a
connection of its own, so it is as long as the test wants without test-only code in the app.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest

from memanto_server.settings import Settings
from tests.helpers.http import API, activate, token_headers
from tests.helpers.owners import OwnerKey, create_owner_key, unique_agent
from tests.helpers.postgres import agent_row_locked, wait_until_blocked
from tests.helpers.processes import ServerProcess, settings_env

pytestmark = pytest.mark.slow

TIMEOUT = httpx.Timeout(30.0)


async def refuses_connections(port: int, timeout: float = 10) -> bool:
    """Whether the port stops accepting new connections within `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except ConnectionRefusedError:
            return True
        writer.close()
        await writer.wait_closed()
        await asyncio.sleep(0.05)
    return False


@contextlib.asynccontextmanager
async def remember_held_in_postgres(
    client: httpx.AsyncClient, db: asyncpg.Connection[Any], database_url: str, owner: OwnerKey, agent: str, content: str
) -> AsyncIterator[asyncio.Task[httpx.Response]]:
    """A `remember` in flight, its INSERT inside Postgres waiting on a lock the test holds
    until the block ends."""
    session = await activate(client, owner.key, agent)
    async with agent_row_locked(database_url, owner.owner_id, agent) as holder:
        request = asyncio.create_task(
            client.post(
                f"{API}/agents/{agent}/remember",
                json={"content": content},
                headers=token_headers(session["session_token"]),
            )
        )
        await wait_until_blocked(db, holder)
        yield request


async def memanto_connections(db: asyncpg.Connection[Any]) -> int:
    return await db.fetchval(  # type: ignore[no-any-return]
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1",
        "memanto-server",
    )


async def test_request_in_flight_at_sigterm_completes_and_the_server_exits_cleanly(
    settings: Settings, fresh_database_url: str, tmp_path: Path
) -> None:
    # A database of the test's own: the connections counted at the end are this server's alone.
    database_url = fresh_database_url
    db = await asyncpg.connect(database_url)
    try:
        owner = await create_owner_key(db)
        await drain_at_sigterm(msgspec.structs.replace(settings, database_url=database_url), db, owner, tmp_path)
    finally:
        await db.close()


async def drain_at_sigterm(settings: Settings, db: asyncpg.Connection[Any], owner: OwnerKey, tmp_path: Path) -> None:
    database_url = settings.database_url
    agent = unique_agent("drain")
    log_path = tmp_path / "server.log"
    server = ServerProcess(settings_env(settings), log_path=log_path, graceful_timeout=20)
    server.start()
    try:
        server.wait_ready()
        async with httpx.AsyncClient(base_url=server.base_url, timeout=TIMEOUT) as client:
            content = "stored while the server was shutting down"
            async with remember_held_in_postgres(client, db, database_url, owner, agent, content) as in_flight:
                assert await memanto_connections(db) >= 1

                server.terminate()
                assert await refuses_connections(server.port), "the server still accepts connections after SIGTERM"
                await asyncio.sleep(0.3)
                assert not in_flight.done(), "the request ended before its lock was released"
            # The lock is released: the request finishes during the shutdown.
            response = await in_flight
        assert response.status_code == 201, response.text
        returncode = await asyncio.to_thread(server.wait, 20)
    finally:
        server.stop()

    # uvicorn exits by re-raising the SIGTERM it handled once shutdown is complete (a
    # container reports 143); 0 when it runs as PID 1 or under a supervisor. Never a kill.
    assert returncode in (0, -signal.SIGTERM), returncode
    log = log_path.read_text()
    for step in (
        "Waiting for connections to close",
        "Waiting for application shutdown",
        "Application shutdown complete",
    ):
        assert step in log, log
    assert "did not close" not in log, log  # the lifespan closed Redis and the pool in time
    assert "Traceback" not in log, log
    stored = await db.fetchval(
        "SELECT count(*) FROM memories WHERE memory_id = $1::uuid AND content LIKE 'stored while%'",
        response.json()["memory_id"],
    )
    assert stored == 1
    deadline = time.monotonic() + 5
    while await memanto_connections(db) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert await memanto_connections(db) == 0  # no connection of the server is left behind


async def test_graceful_timeout_bounds_the_shutdown(
    settings: Settings, database_url: str, owner: OwnerKey, db: asyncpg.Connection[Any]
) -> None:
    """A request that outlasts `--graceful-timeout` is cut off: the process never hangs on it."""
    agent = unique_agent("stuck")
    server = ServerProcess(settings_env(settings), graceful_timeout=1)
    server.start()
    try:
        server.wait_ready()
        async with (
            httpx.AsyncClient(base_url=server.base_url, timeout=TIMEOUT) as client,
            remember_held_in_postgres(client, db, database_url, owner, agent, "never finishes in time") as stuck,
        ):
            started = time.monotonic()
            server.terminate()
            returncode = await asyncio.to_thread(server.wait, 10)  # while the lock is still held
            elapsed = time.monotonic() - started
            try:
                answer: httpx.Response | None = await stuck
            except httpx.RemoteProtocolError:  # closed without an answer
                answer = None
    finally:
        server.stop()
    assert returncode in (0, -signal.SIGTERM), returncode
    assert 1 <= elapsed < 6, elapsed
    # Cut off: uvicorn cancels the request; its answer is its own 500, or none if the
    # connection closes first. (With the default timeouts this does not happen: every
    # request is bounded by the statement and acquire timeouts, well under 30 s.)
    if answer is not None:
        assert answer.status_code == 500, answer.text
