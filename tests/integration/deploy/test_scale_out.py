"""Scale-out, shown with local processes: what compose runs as 3 replicas and a Redis.

Three `memanto-server serve` processes on loopback ports stand in for the replicas behind
nginx (any request may reach any of them); a `redis-server` of the test's own stands in
for compose's Redis, with and without its append-only file.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest

from memanto_server.client import AsyncMemantoClient
from memanto_server.settings import Settings
from tests.helpers.http import API, activate, assert_problem, parse_z, token_headers
from tests.helpers.owners import OwnerKey, unique_agent
from tests.helpers.processes import ServerProcess, free_port, private_redis, running_server, settings_env

pytestmark = pytest.mark.slow

TIMEOUT = httpx.Timeout(15.0)
NGINX_CONF = Path(__file__).resolve().parents[3] / "deploy" / "nginx.conf"


@pytest.fixture(scope="module")
def three_instances(settings: Settings) -> Iterator[list[str]]:
    """Three independent server processes sharing one Postgres and one Redis."""
    servers = [ServerProcess(settings_env(settings)) for _ in range(3)]
    try:
        for server in servers:  # side by side: each takes about a second to start
            server.start()
        for server in servers:
            server.wait_ready()
        yield [server.base_url for server in servers]
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.stop()


async def wait_ready(client: httpx.AsyncClient, timeout: float = 10) -> None:
    """Until `/health/ready` says both backends answer, as a load balancer would wait."""
    deadline = time.monotonic() + timeout
    while (await client.get("/health/ready")).status_code != 200:
        if time.monotonic() > deadline:
            pytest.fail(f"the server was not ready {timeout:g} s after Redis came back")
        await asyncio.sleep(0.05)


# 1. One session, each step on another instance.


async def test_one_session_walks_across_three_instances(
    three_instances: list[str], owner: OwnerKey, db: asyncpg.Connection[Any]
) -> None:
    first, second, third = three_instances
    agent = unique_agent("walk")
    word = f"walk{secrets.token_hex(4)}"
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        activated = await client.post(
            f"{first}{API}/agents/{agent}/activate", params={"duration_hours": 1}, headers=owner.headers
        )
        assert activated.status_code == 201, activated.text
        session = activated.json()
        headers = token_headers(session["session_token"])

        remembered = await client.post(
            f"{second}{API}/agents/{agent}/remember",
            json={"content": f"The {word} marker was stored on the second instance", "type": "fact"},
            headers=headers,
        )
        assert remembered.status_code == 201, remembered.text
        memory_id = remembered.json()["memory_id"]

        extended = await client.post(f"{third}{API}/session/extend", params={"extend_hours": 2}, headers=headers)
        assert extended.status_code == 200, extended.text
        assert parse_z(extended.json()["expires_at"]) - parse_z(session["created_at"]) == timedelta(hours=3)

        recalled = await client.post(f"{first}{API}/agents/{agent}/recall", params={"query": word}, headers=headers)
        assert recalled.status_code == 200, recalled.text
        assert [m["memory_id"] for m in recalled.json()["memories"]] == [memory_id]
        assert recalled.json()["session_id"] == session["session_id"]

        # Every instance sees the same live session, with what the others counted.
        for base_url in three_instances:
            current = await client.get(f"{base_url}{API}/session/current", headers=headers)
            assert current.status_code == 200, current.text
            body = current.json()
            assert body["session_id"] == session["session_id"]
            assert (body["memories_stored"], body["memories_retrieved"], body["extensions"]) == (1, 1, 1)

        deactivated = await client.post(f"{first}{API}/agents/{agent}/deactivate", headers=headers)
        assert deactivated.status_code == 200, deactivated.text
        summary = deactivated.json()
        assert summary["session_id"] == session["session_id"]
        assert (summary["memories_stored"], summary["memories_retrieved"]) == (1, 1)

        for base_url in three_instances:  # the token stops working everywhere at once
            assert_problem(await client.get(f"{base_url}{API}/session/current", headers=headers), 401, "session_ended")

    row = await db.fetchrow(
        "SELECT end_reason, memories_stored, extensions FROM sessions WHERE session_id = $1", session["session_id"]
    )
    assert row is not None
    assert (row["end_reason"], row["memories_stored"], row["extensions"]) == ("deactivated", 1, 1)
    assert await db.fetchval("SELECT count(*) FROM memories WHERE memory_id = $1::uuid", memory_id) == 1


# 2. Activations of one agent raced across all three instances.


async def test_activations_raced_across_three_instances_leave_one_live_session(
    three_instances: list[str], owner: OwnerKey, db: asyncpg.Connection[Any]
) -> None:
    agent = unique_agent("race3")
    count = 30
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        responses = await asyncio.gather(
            *(
                client.post(f"{three_instances[i % 3]}{API}/agents/{agent}/activate", headers=owner.headers)
                for i in range(count)
            )
        )
        assert [r.status_code for r in responses] == [201] * count, [r.text for r in responses if r.status_code != 201]
        sessions = [r.json() for r in responses]
        # Each token is checked on an instance other than the one that issued it.
        checks = await asyncio.gather(
            *(
                client.get(
                    f"{three_instances[(i + 1) % 3]}{API}/session/current", headers=token_headers(s["session_token"])
                )
                for i, s in enumerate(sessions)
            )
        )
    live = [s["session_id"] for s, r in zip(sessions, checks, strict=True) if r.status_code == 200]
    assert len(live) == 1, [r.status_code for r in checks]
    for response in checks:
        if response.status_code != 200:
            assert_problem(response, 401, "session_superseded")
    rows = await db.fetch(
        "SELECT session_id, end_reason FROM sessions WHERE owner_id = $1::uuid AND agent_id = $2", owner.owner_id, agent
    )
    reasons = {r["session_id"]: r["end_reason"] for r in rows}
    assert len(reasons) == count
    assert reasons.pop(live[0]) is None
    assert set(reasons.values()) == {"superseded"}


# 3. deploy/nginx.conf in front of the three instances, as compose runs it.


async def test_nginx_config_balances_the_instances_and_passes_request_ids(
    three_instances: list[str], owner: OwnerKey, tmp_path: Path
) -> None:
    nginx = shutil.which("nginx")
    if nginx is None:
        pytest.skip("nginx is not installed (`apt-get install nginx-light`); deploy/nginx.conf was not run")
    # The compose config, with its one upstream name (`app`, all replicas on Docker's DNS)
    # spelled out as the three loopback instances, and a free port to listen on.
    port = free_port()
    servers = "".join(f"        server {urlsplit(url).netloc};\n" for url in three_instances)
    conf = NGINX_CONF.read_text()
    local = conf.replace("        server app:8000;\n", servers).replace("listen 8000;", f"listen 127.0.0.1:{port};")
    assert local.count("server 127.0.0.1:") == 3
    assert f"listen 127.0.0.1:{port};" in local
    (tmp_path / "nginx.conf").write_text(local)
    access_log = tmp_path / "access.log"
    directives = f"daemon off; pid {tmp_path / 'nginx.pid'};"
    with open(access_log, "wb") as log:
        process = subprocess.Popen(
            [nginx, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-e", "stderr", "-g", directives],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=TIMEOUT) as client:
            deadline = time.monotonic() + 10
            while True:
                try:
                    if (await client.get("/nginx-health")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert process.poll() is None, access_log.read_text()
                assert time.monotonic() < deadline, "nginx did not start"
                await asyncio.sleep(0.05)

            agent = unique_agent("nginx")
            session = await activate(client, owner.key, agent)
            headers = token_headers(session["session_token"])
            for n in range(6):
                response = await client.post(
                    f"{API}/agents/{agent}/remember",
                    json={"content": f"through nginx {n}"},
                    headers={**headers, "X-Request-ID": f"through-nginx-{n}"},
                )
                assert response.status_code == 201, response.text
                assert response.headers["X-Request-ID"] == f"through-nginx-{n}"  # passed through to the app
            current = await client.get(f"{API}/session/current", headers=headers)
            assert current.status_code == 200, current.text
            assert current.json()["memories_stored"] == 6
            made_here = current.headers["X-Request-ID"]  # none sent: nginx made one, the app echoed it
            assert re.fullmatch(r"[0-9a-f]{32}", made_here), made_here
            assert (await client.get("/metrics")).status_code == 404  # scraped per replica, not here
    finally:
        process.terminate()
        process.wait(timeout=10)
    log = access_log.read_text()
    upstreams = set(re.findall(r"upstream=(127\.0\.0\.1:\d+)", log))
    assert upstreams == {urlsplit(url).netloc for url in three_instances}, log
    for n in range(6):
        assert f"request_id=through-nginx-{n}" in log
    assert f"request_id={made_here}" in log


# 4. Redis restarted with its append-only file: live sessions survive.


async def test_redis_restarted_with_its_append_only_file_keeps_live_sessions(
    settings: Settings, owner: OwnerKey, tmp_path: Path
) -> None:
    agent = unique_agent("aof")
    with private_redis(aof_dir=tmp_path) as own_redis:
        env = settings_env(settings)
        env["MEMANTO_REDIS_URL"] = own_redis.url
        with running_server(env) as base_url:
            async with httpx.AsyncClient(base_url=base_url, timeout=TIMEOUT) as client:
                session = await activate(client, owner.key, agent, duration_hours=2)
                headers = token_headers(session["session_token"])
                stored = await client.post(
                    f"{API}/agents/{agent}/remember", params={"content": "kept across a Redis crash"}, headers=headers
                )
                assert stored.status_code == 201, stored.text
                extended = await client.post(f"{API}/session/extend", params={"extend_hours": 1}, headers=headers)
                assert extended.status_code == 200, extended.text

                own_redis.kill()  # a crash: only what the append-only file holds comes back
                assert (await client.get("/health/ready")).status_code == 503
                own_redis.start()
                await wait_ready(client)

                current = await client.get(f"{API}/session/current", headers=headers)
                assert current.status_code == 200, current.text
                body = current.json()
                assert body["session_id"] == session["session_id"]
                assert body["expires_at"] == extended.json()["expires_at"]
                assert (body["memories_stored"], body["extensions"]) == (1, 1)
                again = await client.post(
                    f"{API}/agents/{agent}/remember", params={"content": "and after it"}, headers=headers
                )
                assert again.status_code == 201, again.text
    assert any(tmp_path.rglob("*.aof")), "redis-server wrote no append-only file"


# 5. Redis lost without persistence: every token 401, clients re-activate, no memory lost.


async def test_redis_lost_without_persistence_ends_sessions_but_loses_no_memory(
    settings: Settings, owner: OwnerKey
) -> None:
    agents = [unique_agent("lost") for _ in range(3)]
    word = f"lost{secrets.token_hex(4)}"
    with private_redis() as own_redis:
        env = settings_env(settings)
        env["MEMANTO_REDIS_URL"] = own_redis.url
        with running_server(env) as base_url:
            async with httpx.AsyncClient(base_url=base_url, timeout=TIMEOUT) as client:
                tokens: dict[str, str] = {}
                memory_ids: dict[str, set[str]] = {}
                for agent in agents:
                    tokens[agent] = (await activate(client, owner.key, agent))["session_token"]
                    batch = await client.post(
                        f"{API}/agents/{agent}/batch-remember",
                        json={"memories": [{"content": f"{word} memory {n} of {agent}"} for n in range(5)]},
                        headers=token_headers(tokens[agent]),
                    )
                    assert batch.status_code == 201, batch.text
                    memory_ids[agent] = set(batch.json()["memory_ids"])

                own_redis.stop()
                own_redis.start()  # empty: every live session is gone
                await wait_ready(client)

                for agent, token in tokens.items():
                    for path in ("/session/current", f"/agents/{agent}/recall?query={word}"):
                        method = client.get if path == "/session/current" else client.post
                        assert_problem(
                            await method(f"{API}{path}", headers=token_headers(token)), 401, "session_expired"
                        )

            # A client re-activates by itself on the 401 and finds every memory from before.
            async with AsyncMemantoClient(base_url, owner.key) as memanto:
                for agent in agents:
                    handle = memanto.agent(agent, token=tokens[agent])
                    recalled = await handle.recall(word, limit=20)
                    assert handle.token != tokens[agent]  # a new session
                    assert {m.memory_id for m in recalled.memories} == memory_ids[agent]
