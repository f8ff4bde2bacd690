"""Rate limiting per owner (MEMANTO_RATE_LIMIT): a moving window in the real Redis, shared by instances."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
import pytest
from litestar.testing import AsyncTestClient

from memanto_server.main import create_app
from memanto_server.ops.ratelimit import BYPASS_SECONDS
from memanto_server.settings import Settings
from tests.helpers.http import API, activate, assert_problem, token_headers
from tests.helpers.owners import OwnerKey, unique_agent
from tests.helpers.processes import free_port, private_redis, running_servers, settings_env

LIMIT = 5
RATE_HEADERS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")


@pytest.fixture
async def limited(settings: Settings) -> AsyncIterator[AsyncTestClient[Any]]:
    app = create_app(msgspec.structs.replace(settings, rate_limit=f"{LIMIT}/minute"))
    async with AsyncTestClient(app=app) as client:
        yield client


def assert_rate_headers(response: httpx.Response, remaining: int) -> None:
    assert response.headers["RateLimit-Limit"] == str(LIMIT), response.headers
    assert response.headers["RateLimit-Remaining"] == str(remaining), response.headers
    reset = int(response.headers["RateLimit-Reset"])
    assert 0 < reset <= 60


def limiter_errors(metrics: str) -> float:
    prefix = 'memanto_dependency_errors_total{backend="ratelimit"} '
    return next((float(line.removeprefix(prefix)) for line in metrics.splitlines() if line.startswith(prefix)), 0.0)


async def test_the_request_over_the_limit_gets_429_with_headers(limited: AsyncTestClient[Any], owner: OwnerKey) -> None:
    for used in range(1, LIMIT + 1):
        response = await limited.get(f"{API}/agents", headers=owner.headers)
        assert response.status_code == 200, response.text
        assert_rate_headers(response, remaining=LIMIT - used)

    refused = await limited.get(f"{API}/agents", headers=owner.headers)
    body = assert_problem(refused, 429, "rate_limited")
    assert body["title"]
    retry_after = int(refused.headers["Retry-After"])
    assert 0 < retry_after <= 60
    assert_rate_headers(refused, remaining=0)
    assert refused.headers["x-request-id"]

    # Refused requests do not use up more of the window: still refused, still the same window.
    again = await limited.get(f"{API}/agents", headers=owner.headers)
    assert_problem(again, 429, "rate_limited")
    assert int(again.headers["Retry-After"]) <= retry_after


async def test_another_owner_is_not_affected(limited: AsyncTestClient[Any], make_owner: Any, owner: OwnerKey) -> None:
    for _ in range(LIMIT):
        assert (await limited.get(f"{API}/agents", headers=owner.headers)).status_code == 200
    assert_problem(await limited.get(f"{API}/agents", headers=owner.headers), 429, "rate_limited")

    other = await make_owner("other-owner")
    response = await limited.get(f"{API}/agents", headers=other.headers)
    assert response.status_code == 200, response.text
    assert_rate_headers(response, remaining=LIMIT - 1)


async def test_health_metrics_and_schema_are_exempt(limited: AsyncTestClient[Any], owner: OwnerKey) -> None:
    for _ in range(LIMIT):
        assert (await limited.get(f"{API}/agents", headers=owner.headers)).status_code == 200
    for path in ("/health/live", "/health/ready", "/metrics", "/schema/openapi.json"):
        for _ in range(2):
            response = await limited.get(path, headers=owner.headers)
            assert response.status_code == 200, (path, response.text)
            assert "RateLimit-Limit" not in response.headers, path
    assert_problem(await limited.get(f"{API}/agents", headers=owner.headers), 429, "rate_limited")


async def test_session_token_requests_count_against_the_tokens_owner(
    limited: AsyncTestClient[Any], owner: OwnerKey
) -> None:
    agent = unique_agent("limited")
    session = await activate(limited, owner.key, agent)  # 1 (API key)
    token_only = token_headers(session["session_token"])
    for used in range(2, LIMIT + 1):
        response = await limited.get(f"{API}/session/current", headers=token_only)
        assert response.status_code == 200, response.text
        assert_rate_headers(response, remaining=LIMIT - used)
    assert_problem(await limited.get(f"{API}/session/current", headers=token_only), 429, "rate_limited")
    # The same owner through its API key: the same budget.
    assert_problem(await limited.get(f"{API}/agents", headers=owner.headers), 429, "rate_limited")


async def test_requests_without_a_valid_owner_are_answered_by_the_route(limited: AsyncTestClient[Any]) -> None:
    unknown = {"Authorization": "Bearer mk_" + "x" * 40}
    for _ in range(LIMIT + 2):
        assert_problem(await limited.get(f"{API}/agents", headers=unknown), 401, "invalid_api_key")
    assert_problem(await limited.get(f"{API}/agents"), 401, "missing_credentials")


async def test_rate_limiting_is_off_by_default(client: AsyncTestClient[Any], owner: OwnerKey) -> None:
    assert Settings().rate_limit == ""
    for _ in range(LIMIT * 2):
        response = await client.get(f"{API}/agents", headers=owner.headers)
        assert response.status_code == 200, response.text
        assert not any(name in response.headers for name in RATE_HEADERS), response.headers


async def test_a_limiter_outage_lets_requests_through(settings: Settings, owner: OwnerKey) -> None:
    nowhere = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    app = create_app(msgspec.structs.replace(settings, rate_limit="1/minute", rate_limit_storage_url=nowhere))
    async with AsyncTestClient(app=app) as client:
        before = limiter_errors((await client.get("/metrics")).text)
        for _ in range(3):
            response = await client.get(f"{API}/agents", headers=owner.headers)
            assert response.status_code == 200, response.text
            assert "RateLimit-Limit" not in response.headers
        after = limiter_errors((await client.get("/metrics")).text)
    assert after - before >= 1  # the first failure; then the limiter is left alone for a few seconds


@pytest.mark.slow
async def test_the_limit_is_shared_by_two_server_processes(settings: Settings, owner: OwnerKey) -> None:
    env = settings_env(settings) | {"MEMANTO_RATE_LIMIT": f"{LIMIT}/minute"}
    with running_servers(env, 2) as (first, second):
        async with httpx.AsyncClient(timeout=15) as http:
            statuses = []
            for index in range(LIMIT + 1):
                base = (first, second)[index % 2]
                response = await http.get(f"{base}{API}/agents", headers=owner.headers)
                statuses.append(response.status_code)
            assert statuses == [200] * LIMIT + [429], statuses
            for base in (first, second):
                refused = await http.get(f"{base}{API}/agents", headers=owner.headers)
                assert_problem(refused, 429, "rate_limited")
                assert int(refused.headers["Retry-After"]) > 0
                assert refused.headers["RateLimit-Remaining"] == "0"


@pytest.mark.slow
async def test_the_limit_works_on_a_redis_cluster(settings: Settings, redis_cluster: Any, owner: OwnerKey) -> None:
    """With MEMANTO_REDIS_URL=redis+cluster://…, the counts live in the cluster (one key per owner)."""
    on_cluster = msgspec.structs.replace(settings, redis_url=redis_cluster.url, rate_limit=f"{LIMIT}/minute")
    async with AsyncTestClient(app=create_app(on_cluster)) as client:
        errors_before = limiter_errors((await client.get("/metrics")).text)
        for used in range(1, LIMIT + 1):
            response = await client.get(f"{API}/agents", headers=owner.headers)
            assert response.status_code == 200, response.text
            assert_rate_headers(response, remaining=LIMIT - used)
        refused = await client.get(f"{API}/agents", headers=owner.headers)
        assert_problem(refused, 429, "rate_limited")
        assert limiter_errors((await client.get("/metrics")).text) == errors_before


@pytest.mark.slow
async def test_the_limiter_recovers_when_its_redis_returns(settings: Settings, owner: OwnerKey) -> None:
    with private_redis() as limiter_redis:
        app = create_app(
            msgspec.structs.replace(settings, rate_limit="2/minute", rate_limit_storage_url=limiter_redis.url)
        )
        async with AsyncTestClient(app=app) as client:
            first = await client.get(f"{API}/agents", headers=owner.headers)
            assert first.headers["RateLimit-Remaining"] == "1", first.headers
            limiter_redis.stop()
            for _ in range(3):  # fail open: served, uncounted
                response = await client.get(f"{API}/agents", headers=owner.headers)
                assert response.status_code == 200, response.text
                assert "RateLimit-Limit" not in response.headers
            limiter_redis.start()  # empty again: no persistence
            await asyncio.sleep(BYPASS_SECONDS + 0.5)
            statuses = [(await client.get(f"{API}/agents", headers=owner.headers)).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]


async def test_a_limited_token_request_verifies_its_token_once(limited: AsyncTestClient[Any], owner: OwnerKey) -> None:
    # The limiter's guard and the route's credential dependency both need the token's owner;
    # the signature is checked once per token, not once per asker nor once per request.
    session = await activate(limited, owner.key, unique_agent("verify-once"))
    codec = limited.app.state.services.tokens
    calls: list[str] = []
    real_check = codec._check

    def counting_check(token: str) -> Any:
        calls.append(token)
        return real_check(token)

    codec._check = counting_check
    try:
        for _ in range(3):
            response = await limited.get(
                f"{API}/session/current", headers=token_headers(session["session_token"], owner.key)
            )
            assert response.status_code == 200, response.text
            assert "RateLimit-Remaining" in response.headers
    finally:
        codec._check = real_check
    assert calls == [session["session_token"]]
