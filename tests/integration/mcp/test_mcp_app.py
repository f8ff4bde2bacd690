"""`/mcp` inside the app, spoken to with plain JSON-RPC: rate limits and outages as on REST."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from litestar.testing import AsyncTestClient

from memanto_server.main import create_app
from memanto_server.settings import Settings
from tests.helpers.http import assert_problem
from tests.helpers.owners import OwnerKey, unique_agent
from tests.helpers.processes import free_port

JSONRPC_HEADERS = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-06-18"}


def tool_call(name: str, arguments: dict[str, Any], request_id: int = 1) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": name, "arguments": arguments},
    }


async def test_mcp_calls_count_against_the_owners_rate_limit(settings: Settings, owner: OwnerKey) -> None:
    limited = msgspec.structs.replace(settings, rate_limit="3/minute", redis_prefix=settings.redis_prefix + "rl-mcp:")
    headers = {**owner.headers, **JSONRPC_HEADERS}
    async with AsyncTestClient(app=create_app(limited)) as client:
        agent = unique_agent("limited")
        answers = [
            await client.post("/mcp", json=tool_call("create_agent", {"agent_id": f"{agent}-{i}"}, i), headers=headers)
            for i in range(3)
        ]
        assert [a.status_code for a in answers] == [200, 200, 200]
        assert answers[0].headers["RateLimit-Limit"] == "3"
        refused = await client.post("/mcp", json=tool_call("list_agents", {}, 4), headers=headers)
        assert_problem(refused, 429, "rate_limited")
        assert int(refused.headers["Retry-After"]) > 0
        # REST requests of the same owner share the same window.
        rest = await client.get("/api/v2/agents", headers=owner.headers)
        assert_problem(rest, 429, "rate_limited")


async def test_a_backend_outage_is_a_tool_error_that_says_retry(settings: Settings, owner: OwnerKey) -> None:
    down = msgspec.structs.replace(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0", redis_timeout=0.5)
    async with AsyncTestClient(app=create_app(down)) as client:
        response = await client.post(
            "/mcp",
            json=tool_call("remember", {"agent_id": unique_agent(), "content": "x"}),
            headers={**owner.headers, **JSONRPC_HEADERS},
        )
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert result["isError"] is True
    assert result["structuredContent"]["code"] == "dependency_unavailable"
    assert result["structuredContent"]["status"] == 503
    assert result["structuredContent"]["retry_after"] > 0


async def test_a_body_over_the_limit_is_refused(settings: Settings, owner: OwnerKey) -> None:
    small = msgspec.structs.replace(settings, max_body_bytes=2048)
    async with AsyncTestClient(app=create_app(small)) as client:
        response = await client.post(
            "/mcp",
            json=tool_call("remember", {"agent_id": unique_agent(), "content": "x" * 4096}),
            headers={**owner.headers, **JSONRPC_HEADERS},
        )
    assert response.status_code == 413, response.text


async def test_the_first_requests_at_once_start_one_session_manager_and_all_succeed(
    settings: Settings, owner: OwnerKey
) -> None:
    """The SDK loads at the first `/mcp` request: requests that arrive together while it loads all wait
    for the same start, every one is answered, and the app stops cleanly afterwards."""
    headers = {**owner.headers, **JSONRPC_HEADERS}
    agent = unique_agent("first")
    app = create_app(settings)
    async with AsyncTestClient(app=app) as client:
        lazy = app.state.mcp
        answers = await asyncio.gather(
            *(
                client.post("/mcp", json=tool_call("create_agent", {"agent_id": f"{agent}-{i}"}, i), headers=headers)
                for i in range(8)
            )
        )
        assert [a.status_code for a in answers] == [200] * 8, [a.text for a in answers]
        assert all(a.json()["result"].get("isError") is not True for a in answers)
        listed = await client.post("/mcp", json=tool_call("list_agents", {}, 9), headers=headers)
        ids = {item["agent_id"] for item in listed.json()["result"]["structuredContent"]["agents"]}
        assert {f"{agent}-{i}" for i in range(8)} <= ids
        assert app.state.mcp is lazy
        started = lazy._task
        assert started is not None
        assert not started.done()
    assert started.done()  # stopped with the app
    assert started.exception() is None
