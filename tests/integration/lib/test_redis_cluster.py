"""The app on a real 3-master Redis Cluster (`MEMANTO_REDIS_URL=redis+cluster://…`).

The cluster is started from `redis-server` on loopback ports (the `redis_cluster` fixture).
Every multi-key script keeps an agent's keys under one hash tag, so nothing here may
answer 500 (which is how a CROSSSLOT error would surface), and the server's log of the
multi-process tests must not mention one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio.cluster import RedisCluster

from memanto_server.lib.redis_client import ClusterUrl, is_cluster_url
from memanto_server.lifespan import redis_from
from memanto_server.main import create_app
from memanto_server.redis_keys import key_revocations
from memanto_server.sessions.store import Ended, SessionStore
from memanto_server.settings import Settings, SettingsError
from tests.helpers.cluster import RedisClusterProcesses
from tests.helpers.http import API, activate, assert_problem, parse_z, token_headers
from tests.helpers.owners import OwnerKey, unique_agent
from tests.helpers.processes import free_port, revoke_with_cli, running_server, settings_env
from tests.helpers.sessions import assert_concurrent_extends_add_up

pytestmark = pytest.mark.slow

ONE_SECOND = 1 / 3600  # in hours
TIMEOUT = httpx.Timeout(15.0)


@pytest.fixture(scope="module")
def cluster_settings(settings: Settings, redis_cluster: RedisClusterProcesses) -> Settings:
    return msgspec.structs.replace(settings, redis_url=redis_cluster.url, sweep_interval_seconds=0.5)


@pytest.fixture
async def cluster_client(cluster_settings: Settings) -> AsyncIterator[AsyncTestClient[Any]]:
    async with AsyncTestClient(app=create_app(cluster_settings)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def cluster_server(cluster_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`memanto-server serve --workers 2` on the cluster; its log is checked for CROSSSLOT at the end."""
    log_path = tmp_path_factory.mktemp("cluster-server") / "server.log"
    with running_server(settings_env(cluster_settings), workers=2, log_path=log_path) as base_url:
        yield base_url
    log = log_path.read_text()
    assert "CROSSSLOT" not in log
    assert "Traceback" not in log


async def wait_for(predicate: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.2)


# The URL.


def test_cluster_url_names_its_startup_nodes() -> None:
    url = ClusterUrl("redis+cluster://user:p%40ss@10.0.0.1:7000,10.0.0.2:7001,[::1]:7002")
    assert url.nodes == [("10.0.0.1", 7000), ("10.0.0.2", 7001), ("::1", 7002)]
    assert (url.username, url.password, url.ssl) == ("user", "p@ss", False)
    assert ClusterUrl("rediss+cluster://cache:6380").ssl
    environ = {"MEMANTO_SECRET_KEY": "s" * 32, "MEMANTO_REDIS_URL": "redis+cluster://a:7000,b:7001"}
    assert Settings.from_env(environ).redis_url == "redis+cluster://a:7000,b:7001"


@pytest.mark.parametrize(
    "url", ["redis+cluster://", "redis+cluster://host", "redis+cluster://a:7000,b", "redis+cluster://a:7000/1"]
)
def test_bad_cluster_url_names_the_variable(url: str) -> None:
    with pytest.raises(SettingsError, match="MEMANTO_REDIS_URL"):
        Settings.from_env({"MEMANTO_SECRET_KEY": "s" * 32, "MEMANTO_REDIS_URL": url})


async def test_unreachable_cluster_answers_503_not_500(settings: Settings, owner: OwnerKey) -> None:
    nowhere = msgspec.structs.replace(settings, redis_url=f"redis+cluster://127.0.0.1:{free_port()}")
    async with AsyncTestClient(app=create_app(nowhere)) as client:
        response = await client.post(f"{API}/agents/{unique_agent()}/activate", headers=owner.headers)
        assert_problem(response, 503, "dependency_unavailable")
        assert response.headers["Retry-After"].isdigit()
        ready = await client.get("/health/ready")
        assert ready.status_code == 503, ready.text
        assert ready.json()["checks"]["redis"] != "ok"


# In-process app on the cluster: the whole session life cycle.


async def test_cluster_url_selects_a_cluster_client(cluster_settings: Settings, cluster_client: Any) -> None:
    assert is_cluster_url(cluster_settings.redis_url)
    assert isinstance(cluster_client.app.state.redis, RedisCluster)
    ready = await cluster_client.get("/health/ready")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"postgres": "ok", "redis": "ok"}


async def test_session_life_cycle_on_the_cluster(cluster_client: Any, owner: OwnerKey) -> None:
    client = cluster_client
    agent = unique_agent("cluster")
    session = await activate(client, owner.key, agent, duration_hours=1)
    headers = token_headers(session["session_token"], owner.key)

    for text in ("cluster note one", "cluster note two"):
        stored = await client.post(f"{API}/agents/{agent}/remember", params={"content": text}, headers=headers)
        assert stored.status_code == 201, stored.text
    current = await client.get(f"{API}/session/current", headers=headers)
    assert current.status_code == 200, current.text
    assert current.json()["session_id"] == session["session_id"]
    assert current.json()["memories_stored"] == 2

    extended = await client.post(f"{API}/session/extend", params={"extend_hours": 2}, headers=headers)
    assert extended.status_code == 200, extended.text
    assert parse_z(extended.json()["new_expires_at"]) - parse_z(session["expires_at"]) == timedelta(hours=2)

    recalled = await client.post(f"{API}/agents/{agent}/recall", params={"query": "cluster note"}, headers=headers)
    assert recalled.status_code == 200, recalled.text
    assert recalled.json()["count"] == 2

    ended = await client.post(f"{API}/agents/{agent}/deactivate", headers=headers)
    assert ended.status_code == 200, ended.text
    body = ended.json()
    assert body["end_reason"] == "deactivated"
    assert (body["memories_stored"], body["memories_retrieved"]) == (2, 2)
    assert_problem(await client.get(f"{API}/session/current", headers=headers), 401, "session_ended")


async def test_supersede_and_expiry_on_the_cluster(cluster_client: Any, owner: OwnerKey) -> None:
    client = cluster_client
    agent = unique_agent("cluster")
    first = await activate(client, owner.key, agent)
    second = await activate(client, owner.key, agent, duration_hours=ONE_SECOND)
    assert second["superseded_session_id"] == first["session_id"]
    assert_problem(
        await client.get(f"{API}/session/current", headers=token_headers(first["session_token"])),
        401,
        "session_superseded",
    )
    headers = token_headers(second["session_token"])
    assert (await client.get(f"{API}/session/current", headers=headers)).status_code == 200
    await asyncio.sleep(1.3)
    assert_problem(await client.get(f"{API}/session/current", headers=headers), 401, "session_expired")


async def test_expired_session_is_recorded_by_the_sweeper_on_the_cluster(
    cluster_client: Any, owner: OwnerKey, db: asyncpg.Connection[Any]
) -> None:
    client = cluster_client
    agent = unique_agent("cluster")
    session = await activate(client, owner.key, agent, duration_hours=ONE_SECOND)
    headers = token_headers(session["session_token"])
    stored = await client.post(f"{API}/agents/{agent}/remember", params={"content": "swept note"}, headers=headers)
    assert stored.status_code == 201, stored.text

    async def recorded() -> bool:
        row = await db.fetchrow("SELECT end_reason FROM sessions WHERE session_id = $1", session["session_id"])
        return row is not None and row["end_reason"] == "expired"

    await wait_for(recorded, timeout=10)
    row = await db.fetchrow("SELECT * FROM sessions WHERE session_id = $1", session["session_id"])
    assert row["memories_stored"] == 1
    assert row["ended_at"] == row["expires_at"]


async def test_keys_of_one_agent_share_one_slot(cluster_settings: Settings, owner: OwnerKey) -> None:
    redis = redis_from(cluster_settings)
    try:
        store = SessionStore(redis, cluster_settings.redis_prefix, 60_000)
        agent = unique_agent("slot")
        now = int(time.time() * 1000)
        await store.activate(
            owner.owner_id, agent, "sess_slot", created_ms=now, expires_ms=now + 60_000, max_expires_ms=now + 120_000
        )
        key = store.key(owner.owner_id, agent)
        assert await redis.exists(key) == 1
        assert await redis.cluster_keyslot(key) == await redis.cluster_keyslot(f"{{{owner.owner_id}:{agent}}}")
        # The app wrote nothing else for the agent, anywhere in the cluster: one key, one slot.
        found = [k async for k in redis.scan_iter(match=f"{cluster_settings.redis_prefix}*{agent}*")]
        assert found == [key]
        ended = await store.end(owner.owner_id, agent, None, now)
        assert isinstance(ended, Ended)
        assert ended.record.state.session_id == "sess_slot"
        assert [k async for k in redis.scan_iter(match=f"{cluster_settings.redis_prefix}*{agent}*")] == [key]
        await redis.delete(key)
    finally:
        await redis.aclose()


# A real server process with two workers on the cluster.


async def test_simultaneous_activations_leave_one_live_session_on_the_cluster(
    cluster_server: str, owner: OwnerKey, db: asyncpg.Connection[Any]
) -> None:
    agent = unique_agent("race")
    async with httpx.AsyncClient(base_url=cluster_server, timeout=TIMEOUT) as client:
        responses = await asyncio.gather(
            *(client.post(f"{API}/agents/{agent}/activate", headers=owner.headers) for _ in range(20))
        )
        assert [r.status_code for r in responses] == [201] * 20, [r.text for r in responses if r.status_code != 201]
        sessions = [r.json() for r in responses]
        checks = await asyncio.gather(
            *(client.get(f"{API}/session/current", headers=token_headers(s["session_token"])) for s in sessions)
        )
    live = [s for s, r in zip(sessions, checks, strict=True) if r.status_code == 200]
    assert len(live) == 1, [r.status_code for r in checks]
    for response in checks:
        if response.status_code != 200:
            assert_problem(response, 401, "session_superseded")
    superseded = [s["superseded_session_id"] for s in sessions]
    assert superseded.count(None) == 1, superseded
    rows = await db.fetch(
        "SELECT session_id, end_reason FROM sessions WHERE owner_id = $1::uuid AND agent_id = $2",
        owner.owner_id,
        agent,
    )
    reasons = {r["session_id"]: r["end_reason"] for r in rows}
    assert len(reasons) == 20
    assert reasons.pop(live[0]["session_id"]) is None
    assert list(reasons.values()) == ["superseded"] * 19


async def test_concurrent_extends_lose_nothing_on_the_cluster(cluster_server: str, owner: OwnerKey) -> None:
    await assert_concurrent_extends_add_up(cluster_server, owner.key, unique_agent("extend"))


async def test_key_revocation_reaches_the_instance_through_cluster_pubsub(
    cluster_server: str, cluster_settings: Settings, owner: OwnerKey
) -> None:
    # Both workers listen on the revocation channel (a cluster node counts its own subscribers).
    redis = redis_from(cluster_settings)
    try:
        channel = key_revocations(cluster_settings.redis_prefix)
        deadline = time.monotonic() + 5
        while (subscribers := await redis.pubsub_numsub(channel, target_nodes=RedisCluster.ALL_NODES)) != [
            (channel, 2)
        ]:
            assert time.monotonic() < deadline, subscribers
            await asyncio.sleep(0.05)
    finally:
        await redis.aclose()

    url = f"{cluster_server}{API}/agents"
    for _ in range(8):  # fresh connections, so that both workers cache the key
        async with httpx.AsyncClient(timeout=TIMEOUT) as fresh:
            response = await fresh.get(url, headers=owner.headers)
            assert response.status_code == 200, response.text

    exited = revoke_with_cli(settings_env(cluster_settings), owner.key_id)

    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        while True:
            response = await client.get(url, headers=owner.headers)
            elapsed = time.monotonic() - exited
            if response.status_code != 200:
                assert_problem(response, 401, "invalid_api_key")
                break
            if elapsed > 1.0:
                pytest.fail(f"the server still accepts the revoked key {elapsed:.2f} s after `keys revoke`")
            await asyncio.sleep(0.05)
    assert elapsed <= 1.0
    for _ in range(8):  # whichever worker answers, the key stays rejected
        async with httpx.AsyncClient(timeout=TIMEOUT) as fresh:
            assert_problem(await fresh.get(url, headers=owner.headers), 401, "invalid_api_key")
