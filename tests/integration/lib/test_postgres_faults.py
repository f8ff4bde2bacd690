"""Pooled Postgres connections that break: the request gets a 503, never a 500, the broken
connection is dropped (not pooled again), and the next request succeeds.

A server process talks to the run's database through a TCP proxy of the test's own, so
that the test can break exactly the server's connections and nobody else's:

- the goodbye of a fast shutdown (`FATAL 57P01`), reaching a pooled connection that is
  still open: asyncpg's protocol is then stuck (`InternalClientError: cannot switch to
  state …; another operation … is in progress`) on the next statement;
- the real thing: `pg_terminate_backend` of the server's backends (what a fast shutdown
  does to each of them) while requests are in flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from memanto_server.settings import Settings
from tests.helpers.http import API, assert_unavailable
from tests.helpers.owners import OwnerKey, unique_agent
from tests.helpers.processes import running_server, settings_env
from tests.helpers.proxy import POSTGRES_ADMIN_SHUTDOWN, TcpProxy, tcp_proxy, through, upstream_of

pytestmark = pytest.mark.slow

TIMEOUT = httpx.Timeout(15.0)


@pytest.fixture
def postgres_proxy(database_url: str) -> Iterator[TcpProxy]:
    with tcp_proxy(*upstream_of(database_url)) as proxy:
        yield proxy


def server_env(settings: Settings, proxy: TcpProxy, **overrides: str) -> dict[str, str]:
    env = settings_env(settings)
    env["MEMANTO_DATABASE_URL"] = through(settings.database_url, proxy)
    env.update({f"MEMANTO_{name.upper()}": value for name, value in overrides.items()})
    return env


async def test_a_connection_told_of_a_shutdown_is_dropped_and_the_next_request_succeeds(
    settings: Settings, owner: OwnerKey, postgres_proxy: TcpProxy, tmp_path: Path
) -> None:
    log_path = tmp_path / "server.log"
    env = server_env(settings, postgres_proxy, db_pool_min="1", db_pool_max="1")
    with running_server(env, log_path=log_path) as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=TIMEOUT) as client:
            for _ in range(2):  # the pool's one connection is open, and the API key cached
                assert (await client.get(f"{API}/agents", headers=owner.headers)).status_code == 200
            assert postgres_proxy.connections() == 1

            postgres_proxy.inject(POSTGRES_ADMIN_SHUTDOWN)  # the goodbye, the socket still open
            await asyncio.sleep(0.1)
            broken = await client.get(f"{API}/agents", headers=owner.headers)
            assert_unavailable(broken)
            assert "Postgres" in broken.json()["detail"]

            recovered = await client.get(f"{API}/agents", headers=owner.headers)
            assert recovered.status_code == 200, recovered.text
            again = await client.get(f"{API}/agents", headers=owner.headers)
            assert again.status_code == 200, again.text
    log = log_path.read_text()
    assert "Traceback" not in log, log
    assert "dependency unavailable: Postgres" in log, log


async def backend_pids(db: asyncpg.Connection[Any], proxy: TcpProxy) -> list[int]:
    """The server's backends: those connected from the proxy's side of its connections."""
    ports = proxy.upstream_ports()
    rows = await db.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND client_port = ANY($1::int[])", ports
    )
    return [row["pid"] for row in rows]


async def test_backends_terminated_under_load_give_503s_at_worst_and_the_pool_recovers(
    settings: Settings, owner: OwnerKey, postgres_proxy: TcpProxy, db: asyncpg.Connection[Any], tmp_path: Path
) -> None:
    log_path = tmp_path / "server.log"
    env = server_env(settings, postgres_proxy, db_pool_min="2", db_pool_max="4")
    agent = unique_agent("fast")
    with running_server(env, log_path=log_path) as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=TIMEOUT) as client:
            activated = await client.post(f"{API}/agents/{agent}/activate", headers=owner.headers)
            assert activated.status_code == 201, activated.text
            statuses: list[int] = []
            for _ in range(6):
                requests = [
                    asyncio.ensure_future(client.get(f"{API}/agents/{agent}", headers=owner.headers)) for _ in range(12)
                ]
                await asyncio.sleep(0.005)
                for pid in await backend_pids(db, postgres_proxy):
                    await db.fetchval("SELECT pg_terminate_backend($1)", pid)
                for response in await asyncio.gather(*requests):
                    statuses.append(response.status_code)
                    if response.status_code != 200:
                        assert_unavailable(response)
            assert 500 not in statuses
            for _ in range(3):
                response = await client.get(f"{API}/agents/{agent}", headers=owner.headers)
                assert response.status_code == 200, response.text
    log = log_path.read_text()
    assert "Traceback" not in log, log
