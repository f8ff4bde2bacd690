"""A client that goes away before its answer is not a server error: the access line and
`memanto_http_requests_total` say 499 (nginx's word for it), never 500.

Two ways a real client leaves early, each against a real server: it stops in the middle
of sending its body (the app is reading it), or it closes its socket while its request
waits in Postgres (held on a row lock the test holds, as in test_shutdown.py).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from memanto_server.settings import Settings
from tests.helpers.http import API, activate
from tests.helpers.logs import wait_for_access_line
from tests.helpers.owners import OwnerKey, unique_agent
from tests.helpers.postgres import agent_row_locked, wait_until_blocked
from tests.helpers.processes import ServerProcess, settings_env

pytestmark = pytest.mark.slow

REMEMBER_ROUTE = API + "/agents/{agent_id}/remember"


def requests_counted(metrics: str, status: str) -> float:
    total = 0.0
    for line in metrics.splitlines():
        labels = (f'status="{status}"', f'route="{REMEMBER_ROUTE}"')
        if line.startswith("memanto_http_requests_total{") and all(label in line for label in labels):
            total += float(line.rsplit(" ", 1)[1])
    return total


def raw_request(agent: str, token: str, request_id: str, body: bytes, length: int) -> bytes:
    head = (
        f"POST {API}/agents/{agent}/remember HTTP/1.1\r\n"
        "Host: 127.0.0.1\r\n"
        f"X-Session-Token: {token}\r\n"
        f"X-Request-ID: {request_id}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    )
    return head.encode() + body


async def test_a_client_gone_mid_body_or_mid_request_is_499_not_500(
    settings: Settings, database_url: str, owner: OwnerKey, db: asyncpg.Connection[Any], tmp_path: Path
) -> None:
    agent = unique_agent("gone")
    log_path = tmp_path / "server.log"
    server = ServerProcess(settings_env(settings) | {"MEMANTO_LOG_FORMAT": "json"}, log_path=log_path)
    server.start()
    try:
        server.wait_ready()
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
            session = await activate(client, owner.key, agent)
            token = session["session_token"]

            # 1. Half a body, then the socket closes while the app waits for the rest.
            _, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(raw_request(agent, token, "gone-mid-body", b'{"content": "half', 200))
            await writer.drain()
            await asyncio.sleep(0.3)
            writer.close()
            mid_body = await wait_for_access_line(log_path, "gone-mid-body")

            # 2. The whole request, then the socket closes while its INSERT waits in Postgres.
            body = json.dumps({"content": "answered to nobody"}).encode()
            async with agent_row_locked(database_url, owner.owner_id, agent) as holder:
                _, writer = await asyncio.open_connection("127.0.0.1", server.port)
                writer.write(raw_request(agent, token, "gone-while-held", body, len(body)))
                await writer.drain()
                await wait_until_blocked(db, holder)
                writer.close()
                await asyncio.sleep(0.3)  # the server sees the connection closed
            held = await wait_for_access_line(log_path, "gone-while-held")

            metrics = (await client.get("/metrics")).text
    finally:
        server.stop()

    assert mid_body["status"] == 499, mid_body
    assert held["status"] == 499, held
    assert requests_counted(metrics, "500") == 0, metrics
    assert requests_counted(metrics, "499") == 2, metrics
    # The row was committed: the request did its work, only its answer had no one to go to.
    stored = await db.fetchval("SELECT count(*) FROM memories WHERE content = 'answered to nobody'")
    assert stored == 1
    log = log_path.read_text()
    assert "Traceback" not in log, log
