"""Real server processes: uvicorn workers and instances sharing one Redis and one Postgres.

These tests start `python -m memanto_server.cli.server serve` (and, for outages, a Redis of their
own) and talk to it over loopback with httpx, as a deployed client would.
"""

from __future__ import annotations

import asyncio
import secrets
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio

from memanto_server.settings import Settings
from tests.helpers.http import API, activate, assert_problem, assert_unavailable, token_headers
from tests.helpers.owners import OwnerKey, unique_agent
from tests.helpers.processes import (
    free_port,
    private_redis,
    revoke_with_cli,
    running_server,
    running_servers,
    settings_env,
)
from tests.helpers.sessions import assert_concurrent_extends_add_up

pytestmark = pytest.mark.slow

TIMEOUT = httpx.Timeout(15.0)


@pytest.fixture
def two_workers(server_url: str) -> str:
    """One server process with two uvicorn workers: the run's shared server (tests/fixtures/servers.py)."""
    return server_url


@pytest.fixture(scope="module")
def two_instances(settings: Settings) -> Iterator[tuple[str, str]]:
    """Two independent server processes on two ports (one worker each)."""
    env = settings_env(settings)
    with running_servers(env, 2) as (first, second):
        yield first, second


async def session_rows(db: asyncpg.Connection[Any], owner: OwnerKey, agent: str) -> list[asyncpg.Record]:
    return await db.fetch(
        "SELECT session_id, end_reason FROM sessions WHERE owner_id = $1::uuid AND agent_id = $2",
        owner.owner_id,
        agent,
    )


async def sessions_in_redis(settings: Settings, owner: OwnerKey, agent: str) -> dict[str, set[str]]:
    """Every key Redis holds for the agent, with the session ids it refers to.

    Independent of the store's key layout: any key under the prefix that names the
    agent, and any `sess_…` id in its value (a string, or a hash's fields).
    """
    found: dict[str, set[str]] = {}
    async with redis.asyncio.Redis.from_url(settings.redis_url, decode_responses=True) as client:
        async for key in client.scan_iter(match=f"{settings.redis_prefix}*", count=1000):
            if f"{owner.owner_id}:{agent}" not in key:
                continue
            kind = await client.type(key)
            if kind == "string":
                values = [await client.get(key)]
            elif kind == "hash":
                values = list((await client.hgetall(key)).values())
            else:
                values = []
            found[key] = {v for v in values if isinstance(v, str) and v.startswith("sess_")}
    return found


# 1. One live session per agent, however many processes activate it at once.


@pytest.mark.parametrize("topology", ["two_workers", "two_instances"])
async def test_simultaneous_activations_leave_exactly_one_live_session(
    request: pytest.FixtureRequest, topology: str, settings: Settings, owner: OwnerKey, db: Any
) -> None:
    found = request.getfixturevalue(topology)
    base_urls = [found] if isinstance(found, str) else list(found)
    agent = unique_agent("race")
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        responses = await asyncio.gather(
            *(
                client.post(f"{base_urls[i % len(base_urls)]}{API}/agents/{agent}/activate", headers=owner.headers)
                for i in range(20)
            )
        )
        assert [r.status_code for r in responses] == [201] * 20, [r.text for r in responses if r.status_code != 201]
        control = unique_agent("single")  # what Redis holds for an agent activated once
        single = await client.post(f"{base_urls[0]}{API}/agents/{control}/activate", headers=owner.headers)
        assert single.status_code == 201, single.text
        sessions = [r.json() for r in responses]
        assert len({s["session_id"] for s in sessions}) == 20

        checks = await asyncio.gather(
            *(
                client.get(
                    f"{base_urls[i % len(base_urls)]}{API}/session/current",
                    headers=token_headers(s["session_token"]),
                )
                for i, s in enumerate(sessions)
            )
        )
    live = [s for s, r in zip(sessions, checks, strict=True) if r.status_code == 200]
    assert len(live) == 1, [r.status_code for r in checks]
    for response in checks:
        if response.status_code != 200:
            assert_problem(response, 401, "session_superseded")
    winner = live[0]["session_id"]
    # Every other activation names the session it superseded: together they form one chain.
    superseded = [s["superseded_session_id"] for s in sessions]
    assert superseded.count(None) == 1, superseded
    named = [sid for sid in superseded if sid is not None]
    assert sorted(named) == sorted(s["session_id"] for s in sessions if s["session_id"] != winner)

    rows = await session_rows(db, owner, agent)
    assert len(rows) == 20
    reasons = {r["session_id"]: r["end_reason"] for r in rows}
    assert reasons.pop(winner) is None
    assert list(reasons.values()) == ["superseded"] * 19

    # Redis keeps the winner alone: no key of the agent refers to any of the 19 others.
    in_redis = await sessions_in_redis(settings, owner, agent)
    assert len(in_redis) == len(await sessions_in_redis(settings, owner, control)) >= 1, in_redis
    assert set().union(*in_redis.values()) == {winner}, in_redis


# 2. Concurrent extends through several workers each add their hours.


async def test_concurrent_extends_never_lose_an_extension(two_workers: str, owner: OwnerKey) -> None:
    await assert_concurrent_extends_add_up(two_workers, owner.key, unique_agent("extend"))


# 3. A revoked key stops working on every instance at once.


async def test_key_revocation_reaches_every_instance_within_a_second(
    two_instances: tuple[str, str], settings: Settings, owner: OwnerKey
) -> None:
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        for base_url in two_instances:
            for _ in range(2):  # the second use is answered from the instance's key cache
                response = await client.get(f"{base_url}{API}/agents", headers=owner.headers)
                assert response.status_code == 200, response.text

        exited = revoke_with_cli(settings_env(settings), owner.key_id)

        async def seconds_until_rejected(base_url: str) -> float:
            while True:
                response = await client.get(f"{base_url}{API}/agents", headers=owner.headers)
                elapsed = time.monotonic() - exited
                if response.status_code != 200:
                    assert_problem(response, 401, "invalid_api_key")
                    return elapsed
                if elapsed > 1.0:
                    pytest.fail(f"{base_url} still accepts the revoked key {elapsed:.2f} s after `keys revoke`")
                await asyncio.sleep(0.05)

        delays = await asyncio.gather(*(seconds_until_rejected(url) for url in two_instances))
        assert all(delay <= 1.0 for delay in delays), delays
        # And it stays rejected.
        for base_url in two_instances:
            response = await client.get(f"{base_url}{API}/agents", headers=owner.headers)
            assert_problem(response, 401, "invalid_api_key")


# 4. Redis goes away and comes back: 503s meanwhile, recovery without a restart.


async def test_redis_outage_answers_503_and_recovers(settings: Settings, owner: OwnerKey, db: Any) -> None:
    agent = unique_agent("outage")
    with private_redis() as own_redis:
        env = settings_env(settings)
        env["MEMANTO_REDIS_URL"] = own_redis.url
        with running_server(env) as base_url:
            async with httpx.AsyncClient(base_url=base_url, timeout=TIMEOUT) as client:
                first = await activate(client, owner.key, agent)
                headers = token_headers(first["session_token"])
                assert (await client.get(f"{API}/session/current", headers=headers)).status_code == 200
                assert (await client.get("/health/ready")).status_code == 200

                own_redis.stop()
                assert_unavailable(await client.get(f"{API}/session/current", headers=headers))
                assert_unavailable(await client.post(f"{API}/agents/{agent}/activate", headers=owner.headers))
                ready = await client.get("/health/ready")
                assert ready.status_code == 503, ready.text
                assert ready.json()["checks"]["postgres"] == "ok"
                assert ready.json()["checks"]["redis"] != "ok"
                assert (await client.get("/health/live")).status_code == 200
                # The failed activation left no session behind in the history.
                assert [r["session_id"] for r in await session_rows(db, owner, agent)] == [first["session_id"]]

                own_redis.start()
                deadline = time.monotonic() + 5
                while True:
                    response = await client.post(f"{API}/agents/{agent}/activate", headers=owner.headers)
                    if response.status_code == 201 or time.monotonic() > deadline:
                        break
                    assert_unavailable(response)
                    await asyncio.sleep(0.1)
                assert response.status_code == 201, response.text
                current = await client.get(
                    f"{API}/session/current", headers=token_headers(response.json()["session_token"])
                )
                assert current.status_code == 200, current.text
                assert current.json()["session_id"] == response.json()["session_id"]
                assert (await client.get("/health/ready")).status_code == 200


# 5. Postgres unreachable: the server starts anyway and answers 503, never 500.


async def test_postgres_unreachable_answers_503(settings: Settings, owner: OwnerKey) -> None:
    env = settings_env(settings)
    env["MEMANTO_DATABASE_URL"] = f"postgresql://postgres@127.0.0.1:{free_port()}/memanto"
    with running_server(env) as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=TIMEOUT) as client:
            assert_unavailable(await client.post(f"{API}/agents/{unique_agent()}/activate", headers=owner.headers))
            ready = await client.get("/health/ready")
            assert ready.status_code == 503, ready.text
            assert ready.json()["checks"]["postgres"] != "ok"
            assert ready.json()["checks"]["redis"] == "ok"
            assert (await client.get("/health/live")).status_code == 200


# 6. Keys and tokens never reach the log, even at DEBUG.


async def test_no_credentials_in_debug_logs(settings: Settings, owner: OwnerKey, tmp_path: Path) -> None:
    env = settings_env(settings)
    env["MEMANTO_LOG_LEVEL"] = "DEBUG"
    log_path = tmp_path / "server.log"
    agent = unique_agent("logs")
    bad_key = "mk_" + secrets.token_urlsafe(32)
    with running_server(env, log_path=log_path) as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=TIMEOUT) as client:
            session = await activate(client, owner.key, agent, duration_hours=1)
            token = session["session_token"]
            headers = token_headers(token, owner.key)
            steps = [
                await client.post(
                    f"{API}/agents/{agent}/remember", params={"content": "the sky is blue"}, headers=headers
                ),
                await client.get(f"{API}/session/current", headers=headers),
                await client.post(f"{API}/session/extend", params={"extend_hours": 1}, headers=headers),
                await client.post(f"{API}/agents/{agent}/recall", params={"query": "sky"}, headers=headers),
                await client.post(f"{API}/agents/{agent}/deactivate", headers=headers),
            ]
            assert [r.status_code for r in steps] == [201, 200, 200, 200, 200], [r.text for r in steps]

            rejected = await client.get(f"{API}/agents", headers={"Authorization": f"Bearer {bad_key}"})
            assert_problem(rejected, 401, "invalid_api_key")
            second = await activate(client, owner.key, agent)
            head, payload, signature = second["session_token"].split(".")
            forged_signature = secrets.token_urlsafe(32).replace("-", "A").replace("_", "B")
            forged = f"{head}.{payload}.{forged_signature}"
            forged_response = await client.get(f"{API}/session/current", headers=token_headers(forged, owner.key))
            assert_problem(forged_response, 401, "invalid_token")
    log = log_path.read_text()
    assert log.strip(), "the server wrote no log at all"
    assert "/api/v2/session/current" in log  # the requests were logged, credentials aside
    for secret in (
        owner.key,
        bad_key,
        token,
        token.split(".")[2],
        second["session_token"],
        signature,
        forged,
        forged_signature,
    ):
        if secret in log:  # not `assert … in`: its message would print the log and the secret
            pytest.fail(f"a credential appears in the server log (it starts {secret[:6]}…)")


# 7. A bad configuration stops start-up with a message naming the variable.


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"MEMANTO_ENV": "production", "MEMANTO_SECRET_KEY": None}, "MEMANTO_SECRET_KEY"),
        ({"MEMANTO_ENV": "production", "MEMANTO_SECRET_KEY": "0123456789"}, "MEMANTO_SECRET_KEY"),
        ({"MEMANTO_SESSION_DEFAULT_HOURS": "abc"}, "MEMANTO_SESSION_DEFAULT_HOURS"),
    ],
    ids=["production-without-secret", "short-secret", "hours-not-a-number"],
)
def test_server_refuses_to_start_on_bad_settings(
    settings: Settings, tmp_path: Path, overrides: dict[str, str | None], named: str
) -> None:
    env = settings_env(settings)
    env["MEMANTO_SECRET_FILE"] = str(tmp_path / "secret_key")  # never create one in the working tree
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    try:
        result = subprocess.run(
            [sys.executable, "-m", "memanto_server.cli.server", "serve", "--port", str(free_port())],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"the server started (or hung) instead of refusing a bad {named}")
    assert result.returncode != 0, result.stderr
    assert named in result.stderr, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert not (tmp_path / "secret_key").exists()


# 8. Development: a generated secret, kept on disk, outlives a restart.


async def test_development_secret_is_created_private_and_survives_restart(
    settings: Settings, owner: OwnerKey, tmp_path: Path
) -> None:
    secret_file = tmp_path / "sec" / "secret_key"
    env = settings_env(settings)
    env.pop("MEMANTO_SECRET_KEY")
    env["MEMANTO_ENV"] = "development"
    env["MEMANTO_SECRET_FILE"] = str(secret_file)
    assert not secret_file.exists()

    with running_server(env, workers=2) as base_url:
        assert secret_file.is_file()
        assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
        secret = secret_file.read_text()
        assert len(secret.strip()) >= 32
        assert secret.strip() != settings.secret_key
        async with httpx.AsyncClient(base_url=base_url, timeout=TIMEOUT) as client:
            session = await activate(client, owner.key, unique_agent("devsecret"))
            headers = token_headers(session["session_token"])
            for _ in range(4):  # new connections, so both workers are likely asked
                async with httpx.AsyncClient(base_url=base_url, timeout=TIMEOUT) as fresh:
                    assert (await fresh.get(f"{API}/session/current", headers=headers)).status_code == 200

    with running_server(env) as base_url:
        assert secret_file.read_text() == secret
        async with httpx.AsyncClient(base_url=base_url, timeout=TIMEOUT) as client:
            response = await client.get(f"{API}/session/current", headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["session_id"] == session["session_id"]
    assert [p.name for p in secret_file.parent.iterdir()] == ["secret_key"]  # no temporary files left
