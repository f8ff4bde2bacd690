"""`/mcp` with the real `mcp` client SDK against a real server process (two workers).

Initialize (the 2026-07-28 protocol and the initialize handshake), list the tools, call each
one, owners kept apart, sessions of other clients never superseded, counters counted as REST
counts them, errors as tool errors with the problem's code, and 20 concurrent calls.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from tests.helpers.http import API, activate, assert_problem, token_headers
from tests.helpers.mcp import TOOL_NAMES, call, fails, mcp_client, payload, problem
from tests.helpers.owners import OwnerKey, unique_agent

pytestmark = pytest.mark.slow


def z(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def rest(server_url: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server_url, timeout=15) as http:
        return await http.request(method, path, **kwargs)


async def current(server_url: str, token: str) -> dict[str, Any]:
    response = await rest(server_url, "GET", f"{API}/session/current", headers=token_headers(token))
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def sessions_of(db: asyncpg.Connection[Any], owner: OwnerKey, agent_id: str) -> list[asyncpg.Record]:
    return await db.fetch(
        "SELECT session_id, end_reason, metadata, memories_stored FROM sessions"
        " WHERE owner_id = $1 AND agent_id = $2 ORDER BY created_at",
        uuid.UUID(owner.owner_id),
        agent_id,
    )


# --------------------------------------------------------------------------- the protocol


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_initialize_and_list_the_memanto_tools_with_the_rest_limits(
    server_url: str, owner: OwnerKey, mode: str
) -> None:
    async with mcp_client(server_url, owner.key, mode=mode) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert set(tools) == TOOL_NAMES
    for tool in tools.values():
        assert tool.description
        assert len(tool.description) > 40, tool.name
        assert tool.input_schema["type"] == "object"
        assert "$ref" not in str(tool.input_schema), tool.name  # self-contained for every client
        for name, field in tool.input_schema["properties"].items():
            assert field.get("description"), (tool.name, name)
    remember = tools["remember"].input_schema
    assert remember["required"] == ["content", "agent_id"] or set(remember["required"]) == {"content", "agent_id"}
    assert (remember["properties"]["content"]["minLength"], remember["properties"]["content"]["maxLength"]) == (
        1,
        10_000,
    )
    assert remember["properties"]["tags"]["maxItems"] == 20
    assert remember["properties"]["confidence"]["maximum"] == 1
    assert remember["properties"]["agent_id"]["pattern"].startswith("^[A-Za-z0-9_-]{1,64}$")
    assert remember["properties"]["occurred_at"]["anyOf"][0]["format"] == "date-time"
    assert tools["batch_remember"].input_schema["properties"]["memories"]["maxItems"] == 100
    assert tools["recall"].input_schema["properties"]["limit"]["maximum"] == 100
    assert tools["recall"].input_schema["properties"]["query"]["maxLength"] == 1000
    assert tools["answer"].input_schema["properties"]["limit"]["maximum"] == 20
    assert set(tools["recall_as_of"].input_schema["required"]) == {"agent_id", "as_of"}
    assert tools["recall"].annotations.read_only_hint is True
    assert tools["delete_agent"].annotations.destructive_hint is True


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "missing_credentials"),
        ({"Authorization": "Bearer mk_not-a-key-of-this-server"}, "invalid_api_key"),
        ({"X-Api-Key": "mk_not-a-key-of-this-server"}, "invalid_api_key"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "missing_credentials"),
    ],
)
async def test_no_key_or_a_wrong_one_is_401(server_url: str, headers: dict[str, str], code: str) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    response = await rest(
        server_url,
        "POST",
        "/mcp",
        json=body,
        headers={**headers, "Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-06-18"},
    )
    assert_problem(response, 401, code)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_the_sdk_client_is_refused_without_a_valid_key(server_url: str) -> None:
    with pytest.raises(BaseException):  # noqa: B017, PT011 - the SDK raises its transport's error group
        async with mcp_client(server_url, "mk_wrong", mode="legacy") as client:
            await client.list_tools()


@pytest.mark.parametrize("header", ["authorization", "x-api-key"])
async def test_either_key_header_and_any_host_name(server_url: str, owner: OwnerKey, header: str) -> None:
    async with mcp_client(server_url, owner.key, header=header) as client:
        assert (await call(client, "list_agents"))["agents"] == []
    # Behind a load balancer the Host header is the public name: the key is the check, not the name.
    response = await rest(
        server_url,
        "POST",
        "/mcp",
        json={"jsonrpc": "2.0", "id": 7, "method": "tools/list"},
        headers={
            **owner.headers,
            "Host": "memory.example.com",
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": "2025-06-18",
        },
    )
    assert response.status_code == 200, response.text
    assert {tool["name"] for tool in response.json()["result"]["tools"]} == TOOL_NAMES


# --------------------------------------------------------------------------- every tool


async def test_every_tool_through_an_agents_life(server_url: str, owner: OwnerKey, db: asyncpg.Connection[Any]) -> None:
    agent = unique_agent("mcp")
    async with mcp_client(server_url, owner.key) as client:
        created = await call(client, "create_agent", {"agent_id": agent, "description": "Support desk"})
        assert (created["agent_id"], created["description"]) == (agent, "Support desk")
        assert agent in [a["agent_id"] for a in (await call(client, "list_agents", {"limit": 100}))["agents"]]
        assert (await call(client, "get_agent", {"agent_id": agent}))["active_session"] is None

        stored = await call(
            client,
            "remember",
            {"agent_id": agent, "content": "The customer prefers email", "type": "preference", "tags": ["contact"]},
        )
        assert (stored["agent_id"], stored["type"], stored["namespace"]) == (
            agent,
            "preference",
            f"memanto_agent_{agent}",
        )
        session_id = stored["session_id"]
        batch = await call(
            client,
            "batch_remember",
            {
                "agent_id": agent,
                "memories": [
                    {"content": "Invoices go out on the 1st", "tags": ["billing"]},
                    {"content": "Old office in Paris", "occurred_at": "2020-01-01T00:00:00Z"},
                ],
            },
        )
        assert (batch["stored"], batch["total_submitted"], batch["successful"], batch["failed"]) == (2, 2, 2, 0)

        info = await call(client, "session_info", {"agent_id": agent})
        assert (info["session_id"], info["memories_stored"]) == (session_id, 3)

        recalled = await call(client, "recall", {"agent_id": agent, "query": "email", "tags": ["contact"]})
        assert [m["memory_id"] for m in recalled["memories"]] == [stored["memory_id"]]
        assert recalled["memories"][0]["text"] == "The customer prefers email"
        recent = await call(client, "recall_recent", {"agent_id": agent, "limit": 2})
        assert recent["count"] == 2
        assert recent["next_cursor"]
        as_of = await call(client, "recall_as_of", {"agent_id": agent, "as_of": "2021-01-01T00:00:00Z"})
        assert [m["memory_id"] for m in as_of["memories"]] == [batch["memory_ids"][1]]
        since = z(datetime.now(UTC) - timedelta(hours=1))
        changed = await call(client, "recall_changed_since", {"agent_id": agent, "since": since})
        assert {m["change_type"] for m in changed["memories"]} == {"created"}
        assert changed["count"] == 3
        answered = await call(client, "answer", {"agent_id": agent, "question": "How does the customer want contact?"})
        assert "email" in answered["answer"]
        assert [s["memory_id"] for s in answered["sources"]] == [stored["memory_id"]]

        extended = await call(client, "extend", {"agent_id": agent, "extend_hours": 2})
        assert extended["hours_added"] == 2
        ended = await call(client, "deactivate", {"agent_id": agent})
        assert (ended["session_id"], ended["memories_stored"], ended["memories_created"]) == (session_id, 3, 3)
        assert ended["memories_retrieved"] == 1 + 2 + 1 + 3 + 1

        activated = await call(client, "activate", {"agent_id": agent, "duration_hours": 1.5})
        assert "session_token" not in activated  # the tools run on the key; no secret in a model's context
        assert activated["namespace"] == f"memanto_agent_{agent}"
        assert activated["started_at"] == activated["created_at"]
        assert activated["expires_in_seconds"] == 5400
        detail = await call(client, "get_agent", {"agent_id": agent})
        assert detail["memory_count"] == 3
        assert detail["active_session"]["session_id"] == activated["session_id"]

        assert await call(client, "delete_agent", {"agent_id": agent}) == {"agent_id": agent, "deleted": True}
        await fails(client, "get_agent", {"agent_id": agent}, "agent_not_found")
    assert await db.fetchval("SELECT count(*) FROM memories WHERE agent_id = $1", agent) == 0


async def test_a_memory_tool_activates_a_session_only_when_none_is_live(
    server_url: str, owner: OwnerKey, db: asyncpg.Connection[Any]
) -> None:
    agent = unique_agent("mcp")
    async with mcp_client(server_url, owner.key) as client:
        # No agent: nothing is created, nothing stored.
        await fails(client, "remember", {"agent_id": agent, "content": "x"}, "agent_not_found")
        assert await db.fetchval("SELECT count(*) FROM agents WHERE agent_id = $1", agent) == 0
        await call(client, "create_agent", {"agent_id": agent})
        await fails(client, "session_info", {"agent_id": agent}, "no_active_session")
        await fails(client, "extend", {"agent_id": agent, "extend_hours": 1}, "no_active_session")
        await fails(client, "deactivate", {"agent_id": agent}, "no_active_session")
        first = await call(client, "remember", {"agent_id": agent, "content": "First"})
        second = await call(client, "remember", {"agent_id": agent, "content": "Second"})
        assert first["session_id"] == second["session_id"]
    rows = await sessions_of(db, owner, agent)
    assert len(rows) == 1
    assert json.loads(rows[0]["metadata"]) == {"client": "mcp"}  # marked as the session an MCP tool started


async def test_memory_tools_use_the_session_another_client_holds_and_count_in_it(
    server_url: str, owner: OwnerKey, db: asyncpg.Connection[Any]
) -> None:
    agent = unique_agent("shared")
    async with httpx.AsyncClient(base_url=server_url, timeout=15) as http:
        session = await activate(http, owner.key, agent)
    token = session["session_token"]
    async with mcp_client(server_url, owner.key) as client:
        stored = await call(client, "remember", {"agent_id": agent, "content": "Kept in the REST client's session"})
        recalled = await call(client, "recall", {"agent_id": agent, "query": "session"})
        answered = await call(client, "answer", {"agent_id": agent, "question": "Where is it kept?"})
    assert stored["session_id"] == session["session_id"]
    live = await current(server_url, token)  # the REST client's token still works
    assert live["memories_stored"] == 1
    assert live["memories_retrieved"] == recalled["count"] + len(answered["sources"]) == 2
    assert len(await sessions_of(db, owner, agent)) == 1

    # The activate tool starts a new session, as the REST route does: the old token ends.
    async with mcp_client(server_url, owner.key) as client:
        activated = await call(client, "activate", {"agent_id": agent})
    assert activated["superseded_session_id"] == session["session_id"]
    gone = await rest(server_url, "GET", f"{API}/session/current", headers=token_headers(token))
    assert_problem(gone, 401, "session_superseded")


# --------------------------------------------------------------------------- errors, owners


async def test_errors_are_tool_errors_with_the_problems_code_and_nothing_is_stored(
    server_url: str, owner: OwnerKey, db: asyncpg.Connection[Any]
) -> None:
    agent = unique_agent("errors")
    async with mcp_client(server_url, owner.key) as client:
        await call(client, "create_agent", {"agent_id": agent})
        await fails(client, "create_agent", {"agent_id": agent}, "agent_exists")
        too_long = await fails(client, "remember", {"agent_id": agent, "content": "x" * 10_001}, "validation_error")
        assert too_long["errors"][0]["field"] == "content"
        assert too_long["status"] == 422
        missing = await fails(client, "remember", {"agent_id": agent}, "validation_error")
        assert missing["errors"][0]["field"] == "content"
        bad_item = await fails(
            client,
            "batch_remember",
            {"agent_id": agent, "memories": [{"content": "ok"}, {"content": "bad", "confidence": 2}]},
            "validation_error",
        )
        assert bad_item["errors"][0]["field"] == "memories[1].confidence"
        await fails(client, "remember", {"agent_id": "no spaces allowed", "content": "x"}, "validation_error")
        await fails(client, "remember", {"agent_id": agent, "content": "x", "type": "gossip"}, "validation_error")
        await fails(client, "recall", {"agent_id": agent, "query": "x", "limit": 101}, "validation_error")
        await fails(client, "recall", {"agent_id": agent, "query": "x", "cursor": "forged"}, "validation_error")
        await fails(client, "recall_as_of", {"agent_id": agent}, "validation_error")
        await fails(client, "activate", {"agent_id": agent, "duration_hours": 25}, "validation_error")
        await fails(client, "remember", {"agent_id": agent, "content": "nul \x00 byte"}, "validation_error")
        problem(await client.call_tool("forget_everything", {}), "unknown_tool")
        # Lists and objects sent as JSON text, as some desktop clients send them, are read.
        tagged = await call(client, "remember", {"agent_id": agent, "content": "Tagged", "tags": '["a", "b"]'})
    assert await db.fetchval("SELECT count(*) FROM memories WHERE agent_id = $1", agent) == 1
    assert await db.fetchval("SELECT tags FROM memories WHERE memory_id = $1", uuid.UUID(tagged["memory_id"])) == [
        "a",
        "b",
    ]


async def test_owners_are_kept_apart(server_url: str, make_owner: Any) -> None:
    alice, bob = await make_owner("alice"), await make_owner("bob")
    agent = unique_agent("private")
    async with mcp_client(server_url, alice.key) as client:
        await call(client, "create_agent", {"agent_id": agent})
        await call(client, "remember", {"agent_id": agent, "content": "Alice's secret plan"})
    async with mcp_client(server_url, bob.key) as client:
        assert (await call(client, "list_agents"))["agents"] == []
        await fails(client, "get_agent", {"agent_id": agent}, "agent_not_found")
        await fails(client, "recall", {"agent_id": agent, "query": "secret plan"}, "agent_not_found")
        await fails(client, "session_info", {"agent_id": agent}, "agent_not_found")
        await fails(client, "delete_agent", {"agent_id": agent}, "agent_not_found")
        await fails(client, "deactivate", {"agent_id": agent}, "agent_not_found")
        # Bob's agent of the same name is his own, and empty.
        await call(client, "create_agent", {"agent_id": agent})
        assert (await call(client, "recall", {"agent_id": agent, "query": "secret plan"}))["memories"] == []
    async with mcp_client(server_url, alice.key) as client:
        found = await call(client, "recall", {"agent_id": agent, "query": "secret plan"})
        assert [m["content"] for m in found["memories"]] == ["Alice's secret plan"]
        assert (await call(client, "session_info", {"agent_id": agent}))["memories_stored"] == 1


# --------------------------------------------------------------------------- concurrency


async def test_twenty_concurrent_calls_share_the_live_session(
    server_url: str, owner: OwnerKey, db: asyncpg.Connection[Any]
) -> None:
    """20 calls at once (10 remember, 10 recall) on an agent whose session a REST client holds."""
    agent = unique_agent("busy")
    async with httpx.AsyncClient(base_url=server_url, timeout=15) as http:
        session = await activate(http, owner.key, agent)

    async def one(i: int) -> Any:
        async with mcp_client(server_url, owner.key) as client:
            if i % 2:
                return await client.call_tool("recall", {"agent_id": agent, "query": "parallel"})
            return await client.call_tool("remember", {"agent_id": agent, "content": f"Parallel note {i}"})

    results = await asyncio.gather(*(one(i) for i in range(20)))
    bodies = [payload(r) for r in results]
    assert {b["session_id"] for b in bodies} == {session["session_id"]}
    live = await current(server_url, session["session_token"])
    assert live["memories_stored"] == 10
    assert live["memories_retrieved"] == sum(b["count"] for b in bodies if "count" in b)
    assert await db.fetchval("SELECT count(*) FROM memories WHERE agent_id = $1", agent) == 10
    assert len(await sessions_of(db, owner, agent)) == 1


async def test_twenty_concurrent_first_calls_store_everything_once(
    server_url: str, owner: OwnerKey, db: asyncpg.Connection[Any]
) -> None:
    """20 remembers at once on an agent with no live session, over one connection per call."""
    agent = unique_agent("cold")
    async with mcp_client(server_url, owner.key) as client:
        await call(client, "create_agent", {"agent_id": agent})

    async def one(i: int) -> Any:
        async with mcp_client(server_url, owner.key) as client:
            return await client.call_tool("remember", {"agent_id": agent, "content": f"Cold start {i}"})

    results = await asyncio.gather(*(one(i) for i in range(20)))
    assert all(not r.is_error for r in results), [r.content for r in results if r.is_error]
    assert await db.fetchval("SELECT count(*) FROM memories WHERE agent_id = $1", agent) == 20
    rows = await sessions_of(db, owner, agent)
    live = [r for r in rows if r["end_reason"] is None]
    assert len(live) == 1  # at most one per worker raced, and the others were superseded
    assert {r["end_reason"] for r in rows} <= {None, "superseded"}
    async with mcp_client(server_url, owner.key) as client:
        info = await call(client, "session_info", {"agent_id": agent})
    # Every memory was counted once, in the session it was stored in.
    assert info["memories_stored"] + sum(r["memories_stored"] for r in rows if r["end_reason"]) == 20
