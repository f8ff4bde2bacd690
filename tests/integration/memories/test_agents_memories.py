"""Agents, remember and recall, and the contract's cross-cutting rules (api.md: Conventions, Agents, Memories).

Everything runs against the real app with real Postgres and Redis; what a 201 promises
is checked in Postgres through a connection of the test's own.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest

from memanto_server.settings import Settings
from tests.helpers.http import API, activate, assert_problem, parse_z, token_headers
from tests.helpers.owners import Live, OwnerKey, start, unique_agent

# The contract's list (api.md), written out rather than read from memanto_server.memories.schemas,
# so that a type missing from the app fails here.
MEMORY_TYPES = (
    "fact",
    "preference",
    "goal",
    "decision",
    "artifact",
    "learning",
    "event",
    "instruction",
    "relationship",
    "context",
    "observation",
    "commitment",
    "error",
)
MakeOwner = Callable[..., Awaitable[OwnerKey]]


# --------------------------------------------------------------------------- helpers


def error_fields(body: dict[str, Any]) -> set[str]:
    """The top-level field names a 422 problem lists (`tags[3]` and `$.tags` both count as `tags`)."""
    assert body.get("errors"), body
    return {re.split(r"[\[.]", error["field"].removeprefix("$."), maxsplit=1)[0] for error in body["errors"]}


def assert_validation(response: httpx.Response, field: str) -> dict[str, Any]:
    body = assert_problem(response, 422, "validation_error")
    assert field in error_fields(body), body
    return body


def cursor_of(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


async def remember(client: Any, live: Live, **body: Any) -> dict[str, Any]:
    response = await client.post(live.remember_url, json=body, headers=live.headers)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def recall(client: Any, live: Live, *, params: Any = None, json_body: Any = None) -> dict[str, Any]:
    response = await client.post(live.recall_url, params=params, json=json_body, headers=live.headers)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def count_rows(db: asyncpg.Connection[Any], table: str, owner: OwnerKey, agent_id: str | None = None) -> int:
    assert table in {"agents", "sessions", "memories"}
    if agent_id is None:
        return int(await db.fetchval(f"SELECT count(*) FROM {table} WHERE owner_id = $1", uuid.UUID(owner.owner_id)))  # noqa: S608
    return int(
        await db.fetchval(
            f"SELECT count(*) FROM {table} WHERE owner_id = $1 AND agent_id = $2",  # noqa: S608
            uuid.UUID(owner.owner_id),
            agent_id,
        )
    )


async def stored_in_session(client: Any, live: Live) -> int:
    current = await client.get(f"{API}/session/current", headers=live.headers)
    assert current.status_code == 200, current.text
    return int(current.json()["memories_stored"])


# --------------------------------------------------------------------------- agents


async def test_create_agent_returns_201_and_commits_the_row(
    client: Any, owner: OwnerKey, db: asyncpg.Connection[Any]
) -> None:
    agent = unique_agent()
    before = datetime.now(UTC).replace(microsecond=0)
    response = await client.post(
        f"{API}/agents", json={"agent_id": agent, "description": "handles refunds"}, headers=owner.headers
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["agent_id"] == agent
    assert body["description"] == "handles refunds"
    assert parse_z(body["created_at"]) >= before
    row = await db.fetchrow(
        "SELECT description, last_session_at FROM agents WHERE owner_id = $1 AND agent_id = $2",
        uuid.UUID(owner.owner_id),
        agent,
    )
    assert row is not None
    assert row["description"] == "handles refunds"
    assert row["last_session_at"] is None

    shown = await client.get(f"{API}/agents/{agent}", headers=owner.headers)
    assert shown.status_code == 200, shown.text
    assert shown.json()["description"] == "handles refunds"
    assert shown.json()["active_session"] is None


async def test_create_agent_without_description(client: Any, owner: OwnerKey) -> None:
    agent = unique_agent()
    response = await client.post(f"{API}/agents", json={"agent_id": agent}, headers=owner.headers)
    assert response.status_code == 201, response.text
    assert response.json()["agent_id"] == agent
    assert response.json()["description"] is None


async def test_create_existing_agent_is_409_and_changes_nothing(
    client: Any, owner: OwnerKey, db: asyncpg.Connection[Any]
) -> None:
    agent = unique_agent()
    first = await client.post(f"{API}/agents", json={"agent_id": agent, "description": "one"}, headers=owner.headers)
    assert first.status_code == 201, first.text
    again = await client.post(f"{API}/agents", json={"agent_id": agent, "description": "two"}, headers=owner.headers)
    assert_problem(again, 409, "agent_exists")
    assert await count_rows(db, "agents", owner, agent) == 1
    shown = await client.get(f"{API}/agents/{agent}", headers=owner.headers)
    assert shown.json()["description"] == "one"
    # An agent made by activation exists too.
    activated = unique_agent()
    await activate(client, owner.key, activated)
    assert_problem(
        await client.post(f"{API}/agents", json={"agent_id": activated}, headers=owner.headers), 409, "agent_exists"
    )


async def test_same_agent_id_under_two_owners_is_two_agents(client: Any, make_owner: MakeOwner) -> None:
    first, second = await make_owner("first"), await make_owner("second")
    agent = unique_agent()
    for who in (first, second):
        response = await client.post(f"{API}/agents", json={"agent_id": agent}, headers=who.headers)
        assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    "agent_id",
    [
        pytest.param("bad id!", id="space-and-bang"),
        pytest.param("a" * 65, id="65-chars"),
        pytest.param("", id="empty"),
        pytest.param("slash/inside", id="slash"),
        pytest.param("dot.inside", id="dot"),
        pytest.param("caf\u00e9", id="non-ascii"),
        pytest.param("trailing-newline\n", id="trailing-newline"),
        pytest.param("nul\u0000", id="NUL"),
    ],
)
async def test_create_agent_rejects_invalid_ids_and_creates_nothing(
    client: Any, owner: OwnerKey, db: asyncpg.Connection[Any], agent_id: str
) -> None:
    response = await client.post(f"{API}/agents", json={"agent_id": agent_id}, headers=owner.headers)
    assert_validation(response, "agent_id")
    assert await count_rows(db, "agents", owner) == 0


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"agent_id": unique_agent(), "description": "d" * 1001}, id="description-1001"),
        pytest.param({"agent_id": unique_agent(), "description": "nul\u0000inside"}, id="description-with-NUL"),
        pytest.param({"agent_id": 42}, id="agent_id-not-a-string"),
    ],
)
async def test_create_agent_rejects_bad_fields_and_creates_nothing(
    client: Any, owner: OwnerKey, db: asyncpg.Connection[Any], body: dict[str, Any]
) -> None:
    response = await client.post(f"{API}/agents", json=body, headers=owner.headers)
    assert_problem(response, 422, "validation_error")
    assert await count_rows(db, "agents", owner) == 0


async def test_create_agent_at_the_longest_id(client: Any, owner: OwnerKey) -> None:
    agent = "A_z-9" + "x" * 59
    assert len(agent) == 64
    response = await client.post(f"{API}/agents", json={"agent_id": agent}, headers=owner.headers)
    assert response.status_code == 201, response.text
    assert (await client.get(f"{API}/agents/{agent}", headers=owner.headers)).status_code == 200


async def test_create_agent_without_agent_id_is_422(client: Any, owner: OwnerKey, db: asyncpg.Connection[Any]) -> None:
    response = await client.post(f"{API}/agents", json={"description": "no id"}, headers=owner.headers)
    assert_validation(response, "agent_id")
    assert await count_rows(db, "agents", owner) == 0


async def test_agent_routes_need_an_api_key(client: Any, owner: OwnerKey) -> None:
    live = await start(client, owner)
    assert_problem(await client.get(f"{API}/agents"), 401, "missing_credentials")
    # A session token is not a management credential.
    assert_problem(await client.get(f"{API}/agents", headers=live.headers), 401, "missing_credentials")
    bad = {"Authorization": "Bearer mk_not_a_real_key"}
    assert_problem(
        await client.post(f"{API}/agents", json={"agent_id": unique_agent()}, headers=bad), 401, "invalid_api_key"
    )


async def test_list_agents_keyset_pagination(client: Any, make_owner: MakeOwner) -> None:
    owner = await make_owner("lister")
    created = sorted(unique_agent(f"page{i}") for i in range(5))
    for agent in reversed(created):  # creation order must not matter
        response = await client.post(f"{API}/agents", json={"agent_id": agent}, headers=owner.headers)
        assert response.status_code == 201, response.text

    seen: list[str] = []
    sizes: list[int] = []
    cursor: str | None = None
    for _ in range(10):
        params: dict[str, Any] = {"limit": 2}
        if cursor is not None:
            params["cursor"] = cursor
        response = await client.get(f"{API}/agents", params=params, headers=owner.headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["count"] == len(body["agents"])
        sizes.append(body["count"])
        for agent in body["agents"]:
            assert set(agent) >= {"agent_id", "description", "created_at", "last_session_at"}
            parse_z(agent["created_at"])
        seen.extend(agent["agent_id"] for agent in body["agents"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
        assert isinstance(cursor, str)
        assert cursor
    assert sizes == [2, 2, 1]
    assert seen == created  # in order, no duplicates, no gaps

    everything = await client.get(f"{API}/agents", headers=owner.headers)
    assert [a["agent_id"] for a in everything.json()["agents"]] == created
    assert everything.json()["next_cursor"] is None


async def test_list_agents_exact_page_has_no_next_cursor(client: Any, make_owner: MakeOwner) -> None:
    owner = await make_owner("exact")
    for i in range(2):
        await client.post(f"{API}/agents", json={"agent_id": unique_agent(f"e{i}")}, headers=owner.headers)
    body = (await client.get(f"{API}/agents", params={"limit": 2}, headers=owner.headers)).json()
    assert body["count"] == 2
    assert body["next_cursor"] is None
    empty_owner = await make_owner("empty")
    empty = (await client.get(f"{API}/agents", headers=empty_owner.headers)).json()
    assert empty == {"agents": [], "count": 0, "next_cursor": None}


async def test_list_agents_shows_only_the_owners_own(client: Any, make_owner: MakeOwner) -> None:
    mine, theirs = await make_owner("mine"), await make_owner("theirs")
    my_agent, their_agent = unique_agent("mine"), unique_agent("theirs")
    await client.post(f"{API}/agents", json={"agent_id": my_agent}, headers=mine.headers)
    await client.post(f"{API}/agents", json={"agent_id": their_agent}, headers=theirs.headers)
    listed = (await client.get(f"{API}/agents", headers=mine.headers)).json()
    assert [a["agent_id"] for a in listed["agents"]] == [my_agent]
    assert_problem(await client.get(f"{API}/agents/{their_agent}", headers=mine.headers), 404, "agent_not_found")


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage!!",
        "not-base64-json",
        cursor_of([1, 2]),
        cursor_of({"before": "x"}),
        cursor_of({"after": 5}),
        cursor_of({"after": None}),
        cursor_of({"after": ["a"]}),
    ],
)
async def test_list_agents_rejects_a_cursor_it_did_not_issue(client: Any, owner: OwnerKey, cursor: str) -> None:
    response = await client.get(f"{API}/agents", params={"cursor": cursor}, headers=owner.headers)
    assert_validation(response, "cursor")


@pytest.mark.parametrize("limit", ["0", "101", "-1", "x"])
async def test_list_agents_rejects_bad_limits(client: Any, owner: OwnerKey, limit: str) -> None:
    response = await client.get(f"{API}/agents", params={"limit": limit}, headers=owner.headers)
    assert_validation(response, "limit")


async def test_agent_detail_counts_are_real(client: Any, owner: OwnerKey, db: asyncpg.Connection[Any]) -> None:
    agent = unique_agent()
    first = await start(client, owner, agent)
    for text in ("alpha note", "beta note"):
        await remember(client, first, content=text)
    second = await start(client, owner, agent)  # supersedes the first
    await remember(client, second, content="gamma note")
    await recall(client, second, params={"query": "note"})

    response = await client.get(f"{API}/agents/{agent}", headers=owner.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["agent_id"] == agent
    assert body["memory_count"] == 3 == await count_rows(db, "memories", owner, agent)
    assert body["session_count"] == 2 == await count_rows(db, "sessions", owner, agent)
    assert body["last_session_at"] is not None
    parse_z(body["last_session_at"])
    parse_z(body["created_at"])
    active = body["active_session"]
    assert active["session_id"] == second.session_id
    assert active["memories_stored"] == 1
    assert active["memories_retrieved"] == 3
    assert active["expires_at"] == second.session["expires_at"]
    assert 0 < active["time_remaining_seconds"] <= 6 * 3600

    # A third session with nothing in it, then ended: the counts move with the data only.
    third = await start(client, owner, agent)
    ended = await client.post(f"{API}/agents/{agent}/deactivate", headers=third.headers)
    assert ended.status_code == 200, ended.text
    after = (await client.get(f"{API}/agents/{agent}", headers=owner.headers)).json()
    assert after["memory_count"] == 3
    assert after["session_count"] == 3
    assert after["active_session"] is None


async def test_new_agent_detail_has_zero_counts(client: Any, owner: OwnerKey) -> None:
    agent = unique_agent()
    await client.post(f"{API}/agents", json={"agent_id": agent}, headers=owner.headers)
    body = (await client.get(f"{API}/agents/{agent}", headers=owner.headers)).json()
    assert body["memory_count"] == 0
    assert body["session_count"] == 0
    assert body["last_session_at"] is None
    assert body["active_session"] is None


@pytest.mark.parametrize(
    "agent_id",
    [
        pytest.param("bad id!", id="space-and-bang"),
        pytest.param("a" * 65, id="65-chars"),
        pytest.param("dot.inside", id="dot"),
        pytest.param("semi;colon", id="semicolon"),
        pytest.param("caf%C3%A9", id="non-ascii"),
        pytest.param("newline%0A", id="trailing-newline"),
    ],
)
@pytest.mark.parametrize("method", ["GET", "DELETE"])
async def test_agent_path_with_invalid_id_is_422(client: Any, owner: OwnerKey, method: str, agent_id: str) -> None:
    response = await client.request(method, f"{API}/agents/{agent_id}", headers=owner.headers)
    assert_validation(response, "agent_id")


@pytest.mark.parametrize(
    "agent_id",
    [
        pytest.param("bad%20id", id="space"),
        pytest.param("a" * 65, id="65-chars"),
        pytest.param("newline%0A", id="trailing-newline"),
    ],
)
async def test_activate_with_invalid_agent_id_is_422_and_creates_nothing(
    client: Any, owner: OwnerKey, db: asyncpg.Connection[Any], agent_id: str
) -> None:
    response = await client.post(f"{API}/agents/{agent_id}/activate", headers=owner.headers)
    assert_validation(response, "agent_id")
    assert await count_rows(db, "agents", owner) == 0
    assert await count_rows(db, "sessions", owner) == 0


async def test_memory_path_with_invalid_agent_id_is_422(client: Any, owner: OwnerKey) -> None:
    live = await start(client, owner)
    response = await client.post(f"{API}/agents/{'a' * 65}/remember", params={"content": "x"}, headers=live.headers)
    assert_validation(response, "agent_id")
    assert await stored_in_session(client, live) == 0


async def test_get_unknown_agent_is_404(client: Any, owner: OwnerKey) -> None:
    assert_problem(await client.get(f"{API}/agents/{unique_agent()}", headers=owner.headers), 404, "agent_not_found")


async def test_delete_agent_removes_everything_and_kills_its_token(
    client: Any, owner: OwnerKey, db: asyncpg.Connection[Any]
) -> None:
    agent = unique_agent()
    first = await start(client, owner, agent)
    await remember(client, first, content="to be forgotten")
    live = await start(client, owner, agent)
    await remember(client, live, content="also to be forgotten", tags=["x"])
    keeper = await start(client, owner)  # another agent of the same owner stays untouched
    await remember(client, keeper, content="keep me")
    assert await count_rows(db, "memories", owner, agent) == 2
    assert await count_rows(db, "sessions", owner, agent) == 2

    response = await client.delete(f"{API}/agents/{agent}", headers=owner.headers)
    assert response.status_code == 204, response.text
    assert response.content == b""

    assert await count_rows(db, "agents", owner, agent) == 0
    assert await count_rows(db, "memories", owner, agent) == 0
    assert await count_rows(db, "sessions", owner, agent) == 0
    assert await count_rows(db, "memories", owner, keeper.agent_id) == 1

    current = await client.get(f"{API}/session/current", headers=live.headers)
    assert_problem(current, 401, "session_ended")
    assert "WWW-Authenticate" in current.headers
    write = await client.post(live.remember_url, params={"content": "after death"}, headers=live.headers)
    assert_problem(write, 401, "session_ended")
    assert await count_rows(db, "memories", owner, agent) == 0
    read = await client.post(live.recall_url, params={"query": "forgotten"}, headers=live.headers)
    assert_problem(read, 401, "session_ended")

    assert_problem(await client.get(f"{API}/agents/{agent}", headers=owner.headers), 404, "agent_not_found")
    assert_problem(await client.delete(f"{API}/agents/{agent}", headers=owner.headers), 404, "agent_not_found")
    listed = (await client.get(f"{API}/agents", headers=owner.headers)).json()
    assert agent not in [a["agent_id"] for a in listed["agents"]]
    # The keeper's session is still live.
    assert (await client.get(f"{API}/session/current", headers=keeper.headers)).status_code == 200

    # The name can be used again, and starts empty.
    reborn = await start(client, owner, agent)
    assert (await recall(client, reborn, params={"query": "forgotten"}))["count"] == 0


async def test_delete_unknown_agent_is_404(client: Any, owner: OwnerKey) -> None:
    assert_problem(await client.delete(f"{API}/agents/{unique_agent()}", headers=owner.headers), 404, "agent_not_found")


async def test_delete_another_owners_agent_is_404_and_keeps_it(
    client: Any, make_owner: MakeOwner, db: asyncpg.Connection[Any]
) -> None:
    mine, theirs = await make_owner("mine"), await make_owner("theirs")
    their_live = await start(client, theirs)
    await remember(client, their_live, content="theirs")
    response = await client.delete(f"{API}/agents/{their_live.agent_id}", headers=mine.headers)
    assert_problem(response, 404, "agent_not_found")
    assert await count_rows(db, "memories", theirs, their_live.agent_id) == 1
    assert (await client.get(f"{API}/session/current", headers=their_live.headers)).status_code == 200


# --------------------------------------------------------------------------- remember


async def test_remember_with_query_parameters(client: Any, owner: OwnerKey, db: asyncpg.Connection[Any]) -> None:
    live = await start(client, owner)
    before = datetime.now(UTC).replace(microsecond=0)
    response = await client.post(
        live.remember_url,
        params={"content": "The customer prefers email over phone", "type": "preference"},
        headers=token_headers(live.session["session_token"], owner.key),  # key beside the token, as clients do
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"memory_id", "agent_id", "session_id", "type", "created_at", "status", "namespace"}
    memory_id = uuid.UUID(body["memory_id"])
    assert str(memory_id) == body["memory_id"]
    assert body["agent_id"] == live.agent_id
    assert body["session_id"] == live.session_id
    assert body["type"] == "preference"
    assert body["status"] == "stored"
    created = parse_z(body["created_at"])
    assert before <= created <= datetime.now(UTC)
    assert response.headers["X-Session-Expires-At"] == live.session["expires_at"]

    row = await db.fetchrow("SELECT * FROM memories WHERE memory_id = $1", memory_id)
    assert row is not None
    assert str(row["owner_id"]) == owner.owner_id
    assert row["agent_id"] == live.agent_id
    assert row["session_id"] == live.session_id
    assert row["content"] == "The customer prefers email over phone"
    assert row["type"] == "preference"
    assert row["title"] is None
    assert row["tags"] == []
    assert row["confidence"] == pytest.approx(0.8)
    assert row["source"] is None
    assert row["metadata"] is None
    assert abs((row["created_at"] - created).total_seconds()) < 1
    assert await stored_in_session(client, live) == 1


async def test_remember_with_query_title(client: Any, owner: OwnerKey, db: asyncpg.Connection[Any]) -> None:
    live = await start(client, owner)
    response = await client.post(
        live.remember_url, params={"content": "body text", "title": "A title"}, headers=live.headers
    )
    assert response.status_code == 201, response.text
    row = await db.fetchrow(
        "SELECT title, type FROM memories WHERE memory_id = $1", uuid.UUID(response.json()["memory_id"])
    )
    assert row is not None
    assert row["title"] == "A title"
    assert row["type"] == "fact"


async def test_remember_json_body_with_every_field(client: Any, owner: OwnerKey, db: asyncpg.Connection[Any]) -> None:
    live = await start(client, owner)
    metadata = {"ticket": 4521, "nested": {"ok": True, "list": [1, "two", None]}, "unicode": "café ☕"}
    sent = {
        "content": "Refund policy: 30 days, receipt required. Ünïcødé stays intact.",
        "type": "decision",
        "title": "Refund policy",
        "tags": ["billing", "policy", "refunds"],
        "confidence": 0.95,
        "source": "support-call-2026-03-30",
        "metadata": metadata,
    }
    body = await remember(client, live, **sent)
    assert body["type"] == "decision"
    assert body["status"] == "stored"
    assert body["agent_id"] == live.agent_id
    assert body["session_id"] == live.session_id
    parse_z(body["created_at"])

    row = await db.fetchrow("SELECT * FROM memories WHERE memory_id = $1", uuid.UUID(body["memory_id"]))
    assert row is not None
    assert str(row["owner_id"]) == owner.owner_id
    assert row["agent_id"] == live.agent_id
    assert row["session_id"] == live.session_id
    assert row["content"] == sent["content"]
    assert row["type"] == "decision"
    assert row["title"] == "Refund policy"
    assert row["tags"] == ["billing", "policy", "refunds"]
    assert row["confidence"] == pytest.approx(0.95, abs=1e-6)
    assert row["source"] == "support-call-2026-03-30"
    assert json.loads(row["metadata"]) == metadata


async def test_remember_accepts_the_limits_exactly(client: Any, owner: OwnerKey, db: asyncpg.Connection[Any]) -> None:
    live = await start(client, owner)
    metadata = {"k": "v" * (4096 - len('{"k":""}'))}
    assert len(json.dumps(metadata, separators=(",", ":")).encode()) == 4096
    sent = {
        "content": "c" * 10_000,
        "title": "t" * 100,
        "tags": [f"{i:02d}" + "g" * 62 for i in range(20)],
        "confidence": 1.0,
        "metadata": metadata,
    }
    body = await remember(client, live, **sent)
    row = await db.fetchrow("SELECT * FROM memories WHERE memory_id = $1", uuid.UUID(body["memory_id"]))
    assert row is not None
    assert len(row["content"]) == 10_000
    assert len(row["title"]) == 100
    assert row["tags"] == sent["tags"]
    assert row["confidence"] == 1.0
    zero = await remember(client, live, content="unsure", confidence=0)
    assert await db.fetchval("SELECT confidence FROM memories WHERE memory_id = $1", uuid.UUID(zero["memory_id"])) == 0
    one_char = await client.post(live.remember_url, params={"content": "x"}, headers=live.headers)
    assert one_char.status_code == 201, one_char.text
    assert await count_rows(db, "memories", owner, live.agent_id) == 3


@pytest.mark.parametrize("memory_type", MEMORY_TYPES)
@pytest.mark.parametrize("how", ["query", "body"])
async def test_remember_accepts_every_type(
    client: Any, owner: OwnerKey, db: asyncpg.Connection[Any], memory_type: str, how: str
) -> None:
    live = await start(client, owner)
    fields = {"content": f"a memory of type {memory_type}", "type": memory_type}
    if how == "query":
        response = await client.post(live.remember_url, params=fields, headers=live.headers)
    else:
        response = await client.post(live.remember_url, json=fields, headers=live.headers)
    assert response.status_code == 201, response.text
    assert response.json()["type"] == memory_type
    stored = await db.fetchval(
        "SELECT type FROM memories WHERE memory_id = $1", uuid.UUID(response.json()["memory_id"])
    )
    assert stored == memory_type


@pytest.mark.parametrize("how", ["query", "body"])
async def test_remember_default_type_is_fact(
    client: Any, owner: OwnerKey, db: asyncpg.Connection[Any], how: str
) -> None:
    live = await start(client, owner)
    if how == "query":
        response = await client.post(live.remember_url, params={"content": "no type given"}, headers=live.headers)
    else:
        response = await client.post(live.remember_url, json={"content": "no type given"}, headers=live.headers)
    assert response.status_code == 201, response.text
    assert response.json()["type"] == "fact"
    row = await db.fetchrow(
        "SELECT type, confidence, tags FROM memories WHERE memory_id = $1", uuid.UUID(response.json()["memory_id"])
    )
    assert row is not None
    assert row["type"] == "fact"
    assert row["confidence"] == pytest.approx(0.8)
    assert row["tags"] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"content": ""}, "content", id="content-empty"),
        pytest.param({"content": "c" * 10_001}, "content", id="content-10001"),
        pytest.param({"content": "ok", "type": "opinion"}, "type", id="type-unknown"),
        pytest.param({"content": "ok", "type": "FACT"}, "type", id="type-wrong-case"),
        pytest.param({"content": "ok", "title": "t" * 101}, "title", id="title-101"),
        pytest.param({"content": "ok", "tags": [f"t{i}" for i in range(21)]}, "tags", id="tags-21"),
        pytest.param({"content": "ok", "tags": ["fine", "g" * 65]}, "tags", id="tag-65"),
        pytest.param({"content": "ok", "tags": ["fine", ""]}, "tags", id="tag-empty"),
        pytest.param({"content": "ok", "tags": "billing"}, "tags", id="tags-not-a-list"),
        pytest.param({"content": "ok", "tags": ["fine", "nul\u0000"]}, "tags", id="tag-with-NUL"),
        pytest.param({"content": "nul\u0000inside"}, "content", id="content-with-NUL"),
        pytest.param({"content": "ok", "title": "nul\u0000"}, "title", id="title-with-NUL"),
        pytest.param({"content": "ok", "source": "s" * 201}, "source", id="source-201"),
        pytest.param({"content": "ok", "confidence": -0.1}, "confidence", id="confidence-negative"),
        pytest.param({"content": "ok", "confidence": 1.1}, "confidence", id="confidence-over-1"),
        pytest.param({"content": "ok", "confidence": "high"}, "confidence", id="confidence-not-a-number"),
        pytest.param({"content": "ok", "metadata": {"k": "v" * 4100}}, "metadata", id="metadata-over-4kb"),
        pytest.param({"content": "ok", "metadata": ["not", "an", "object"]}, "metadata", id="metadata-not-object"),
        pytest.param({"type": "fact", "title": "no content"}, "content", id="content-missing"),
        pytest.param({}, "content", id="empty-object"),
        pytest.param({"content": 42}, "content", id="content-not-a-string"),
    ],
)
async def test_remember_body_out_of_limits_is_422_and_stores_nothing(
    client: Any, owner: OwnerKey, db: asyncpg.Connection[Any], body: dict[str, Any], field: str
) -> None:
    live = await start(client, owner)
    response = await client.post(live.remember_url, json=body, headers=live.headers)
    assert_validation(response, field)
    assert await count_rows(db, "memories", owner, live.agent_id) == 0
    assert await stored_in_session(client, live) == 0


@pytest.mark.parametrize(
    ("params", "field"),
    [
        pytest.param({"content": ""}, "content", id="content-empty"),
        pytest.param({"content": "c" * 10_001}, "content", id="content-10001"),
        pytest.param({"content": "ok", "type": "opinion"}, "type", id="type-unknown"),
        pytest.param({"content": "ok", "title": "t" * 101}, "title", id="title-101"),
        pytest.param({}, "content", id="content-missing"),
        pytest.param({"type": "fact"}, "content", id="content-missing-type-given"),
    ],
)
async def test_remember_query_out_of_limits_is_422_and_stores_nothing(
    client: Any, owner: OwnerKey, db: asyncpg.Connection[Any], params: dict[str, Any], field: str
) -> None:
    live = await start(client, owner)
    response = await client.post(live.remember_url, params=params, headers=live.headers)
    assert_validation(response, field)
    assert await count_rows(db, "memories", owner, live.agent_id) == 0
    assert await stored_in_session(client, live) == 0


async def test_remember_needs_a_live_session_of_the_path_agent(
    client: Any, owner: OwnerKey, db: asyncpg.Connection[Any]
) -> None:
    mine = await start(client, owner)
    other = await start(client, owner)
    response = await client.post(other.remember_url, params={"content": "not mine"}, headers=mine.headers)
    assert_problem(response, 403, "agent_mismatch")
    assert_problem(
        await client.post(mine.remember_url, params={"content": "no token"}, headers=owner.headers),
        401,
        "missing_credentials",
    )
    assert await count_rows(db, "memories", owner, other.agent_id) == 0
    assert await count_rows(db, "memories", owner, mine.agent_id) == 0


# --------------------------------------------------------------------------- recall


async def test_recall_ranks_more_mentions_first(client: Any, owner: OwnerKey) -> None:
    live = await start(client, owner)
    many = await remember(client, live, content="Invoice 42: the invoice was wrong, so we reissued the invoice.")
    once = await remember(client, live, content="The customer asked about an invoice yesterday.")
    await remember(client, live, content="Shipping is free above fifty euros.")
    body = await recall(client, live, params={"query": "invoice"})
    assert [m["memory_id"] for m in body["memories"]] == [many["memory_id"], once["memory_id"]]
    assert body["count"] == 2
    scores = [m["score"] for m in body["memories"]]
    assert scores[0] > scores[1] > 0


async def test_recall_ranks_a_title_match_above_a_content_match(client: Any, owner: OwnerKey) -> None:
    live = await start(client, owner)
    # The title match is stored first, so newest-first tie-breaking cannot explain the order.
    titled = await remember(client, live, title="Kubernetes upgrade", content="Plan the cluster work for April.")
    in_content = await remember(client, live, content="We talked about kubernetes during lunch.")
    body = await recall(client, live, json_body={"query": "kubernetes"})
    assert [m["memory_id"] for m in body["memories"]] == [titled["memory_id"], in_content["memory_id"]]
    assert body["memories"][0]["score"] > body["memories"][1]["score"]


async def test_recall_response_fields(client: Any, owner: OwnerKey) -> None:
    live = await start(client, owner)
    stored = await remember(
        client,
        live,
        content="Alice manages the Berlin office.",
        type="relationship",
        title="Alice",
        tags=["people", "berlin"],
        confidence=0.6,
        source="onboarding",
        metadata={"x": 1},
    )
    response = await client.post(live.recall_url, params={"query": "Berlin office"}, headers=live.headers)
    assert response.status_code == 200, response.text
    assert response.headers["X-Session-Expires-At"] == live.session["expires_at"]
    body = response.json()
    assert body["agent_id"] == live.agent_id
    assert body["session_id"] == live.session_id
    assert body["query"] == "Berlin office"
    assert body["count"] == 1
    assert "next_cursor" in body
    (memory,) = body["memories"]
    assert set(memory) >= {
        "memory_id",
        "content",
        "type",
        "title",
        "tags",
        "confidence",
        "score",
        "created_at",
        "session_id",
    }
    assert memory["memory_id"] == stored["memory_id"]
    assert memory["content"] == "Alice manages the Berlin office."
    assert memory["type"] == "relationship"
    assert memory["title"] == "Alice"
    assert memory["tags"] == ["people", "berlin"]
    assert memory["confidence"] == pytest.approx(0.6, abs=1e-4)
    assert isinstance(memory["score"], float)
    assert 0 < memory["score"] <= 1
    assert memory["created_at"] == stored["created_at"]
    assert memory["session_id"] == live.session_id


async def test_recall_limit_is_respected(client: Any, owner: OwnerKey) -> None:
    live = await start(client, owner)
    for i in range(6):
        await remember(client, live, content=f"deployment number {i} went fine")
    assert (await recall(client, live, params={"query": "deployment"}))["count"] == 6
    by_query = await recall(client, live, params={"query": "deployment", "limit": 3})
    assert by_query["count"] == 3
    assert len(by_query["memories"]) == 3
    by_body = await recall(client, live, json_body={"query": "deployment", "limit": 2})
    assert by_body["count"] == 2
    assert len(by_body["memories"]) == 2
    one = await recall(client, live, params={"query": "deployment", "limit": 1})
    assert one["count"] == 1
    assert one["memories"][0]["memory_id"] == by_query["memories"][0]["memory_id"]


async def test_recall_default_limit_is_10(client: Any, owner: OwnerKey) -> None:
    live = await start(client, owner)
    for i in range(12):
        await remember(client, live, content=f"reminder {i} about the standup")
    assert (await recall(client, live, params={"query": "standup"}))["count"] == 10
    assert (await recall(client, live, params={"query": "standup", "limit": 100}))["count"] == 12


async def test_recall_type_filter(client: Any, owner: OwnerKey) -> None:
    live = await start(client, owner)
    ids = {
        kind: (await remember(client, live, content=f"coffee {kind} note", type=kind))["memory_id"]
        for kind in ("fact", "preference", "goal")
    }

    def found(body: dict[str, Any]) -> set[str]:
        assert body["count"] == len(body["memories"])
        return {m["memory_id"] for m in body["memories"]}

    assert found(await recall(client, live, params={"query": "coffee"})) == set(ids.values())
    one = await recall(client, live, params={"query": "coffee", "type": "preference"})
    assert found(one) == {ids["preference"]}
    assert all(m["type"] == "preference" for m in one["memories"])
    many = await recall(client, live, params=[("query", "coffee"), ("type", "preference"), ("type", "goal")])
    assert found(many) == {ids["preference"], ids["goal"]}
    body_list = await recall(client, live, json_body={"query": "coffee", "type": ["fact", "goal"]})
    assert found(body_list) == {ids["fact"], ids["goal"]}
    body_one = await recall(client, live, json_body={"query": "coffee", "type": "goal"})
    assert found(body_one) == {ids["goal"]}
    none = await recall(client, live, params={"query": "coffee", "type": "error"})
    assert found(none) == set()


async def test_recall_finds_memories_from_earlier_sessions(client: Any, owner: OwnerKey) -> None:
    agent = unique_agent()
    first = await start(client, owner, agent)
    old = await remember(client, first, content="The VPN password rotates every ninety days.")
    ended = await client.post(f"{API}/agents/{agent}/deactivate", headers=first.headers)
    assert ended.status_code == 200, ended.text
    second = await start(client, owner, agent)
    middle = await remember(client, second, content="The VPN client must be version 5.")
    third = await start(client, owner, agent)  # supersedes the second
    body = await recall(client, third, params={"query": "VPN"})
    assert body["session_id"] == third.session_id
    by_id = {m["memory_id"]: m for m in body["memories"]}
    assert set(by_id) == {old["memory_id"], middle["memory_id"]}
    assert by_id[old["memory_id"]]["session_id"] == first.session_id
    assert by_id[middle["memory_id"]]["session_id"] == second.session_id
    # The old token cannot read them any more.
    stale = await client.post(first.recall_url, params={"query": "VPN"}, headers=first.headers)
    assert stale.status_code == 401, stale.text


async def test_recall_never_returns_another_agents_memories(client: Any, owner: OwnerKey) -> None:
    mine = await start(client, owner)
    other = await start(client, owner)
    my_memory = await remember(client, mine, content="the launch codename is bluebird")
    await remember(client, other, content="the launch codename is bluebird for the other agent too")
    body = await recall(client, mine, params={"query": "bluebird codename"})
    assert [m["memory_id"] for m in body["memories"]] == [my_memory["memory_id"]]
    # And the other way round, through the other agent's own session.
    theirs = await recall(client, other, params={"query": "bluebird"})
    assert my_memory["memory_id"] not in {m["memory_id"] for m in theirs["memories"]}
    assert theirs["count"] == 1


async def test_recall_never_returns_another_owners_memories(client: Any, make_owner: MakeOwner) -> None:
    first, second = await make_owner("first"), await make_owner("second")
    agent = unique_agent()  # the same agent name under both owners
    mine = await start(client, first, agent)
    theirs = await start(client, second, agent)
    my_memory = await remember(client, mine, content="quarterly revenue target is ambitious")
    their_memory = await remember(client, theirs, content="quarterly revenue target is modest")
    mine_found = await recall(client, mine, params={"query": "quarterly revenue"})
    assert [m["memory_id"] for m in mine_found["memories"]] == [my_memory["memory_id"]]
    theirs_found = await recall(client, theirs, params={"query": "quarterly revenue"})
    assert [m["memory_id"] for m in theirs_found["memories"]] == [their_memory["memory_id"]]
    # A token of one owner with the other owner's key is refused outright.
    mixed = await client.post(
        mine.recall_url, params={"query": "quarterly"}, headers=token_headers(mine.session["session_token"], second.key)
    )
    assert_problem(mixed, 403, "owner_mismatch")


async def test_recall_matching_nothing_is_200_and_empty(client: Any, owner: OwnerKey) -> None:
    live = await start(client, owner)
    await remember(client, live, content="apples and pears")
    body = await recall(client, live, params={"query": "zeppelin"})
    assert body["count"] == 0
    assert body["memories"] == []
    assert body["query"] == "zeppelin"
    # Only stop words, or only punctuation: still a clean empty answer.
    assert (await recall(client, live, params={"query": "the and of"}))["count"] == 0
    assert (await recall(client, live, json_body={"query": "!!! ??? ''"}))["count"] == 0


async def test_recall_on_an_agent_without_memories(client: Any, owner: OwnerKey) -> None:
    live = await start(client, owner)
    body = await recall(client, live, json_body={"query": "anything"})
    assert body["count"] == 0
    assert body["memories"] == []


async def test_recall_handles_search_syntax(client: Any, owner: OwnerKey) -> None:
    live = await start(client, owner)
    red = await remember(client, live, content="the red car is fast")
    blue = await remember(client, live, content="the blue car is slow")
    both = await recall(client, live, params={"query": "car"})
    assert {m["memory_id"] for m in both["memories"]} == {red["memory_id"], blue["memory_id"]}
    minus = await recall(client, live, params={"query": "car -blue"})
    assert [m["memory_id"] for m in minus["memories"]] == [red["memory_id"]]
    phrase = await recall(client, live, params={"query": '"blue car"'})
    assert [m["memory_id"] for m in phrase["memories"]] == [blue["memory_id"]]
    # Unbalanced quotes and operators never make a 500.
    odd = await client.post(live.recall_url, params={"query": '"car OR -'}, headers=live.headers)
    assert odd.status_code == 200, odd.text


@pytest.mark.parametrize(
    ("params", "json_body", "field"),
    [
        pytest.param(None, None, "query", id="missing"),
        pytest.param({"limit": 5}, None, "query", id="missing-with-limit"),
        pytest.param(None, {"limit": 5}, "query", id="missing-in-body"),
        pytest.param({"query": ""}, None, "query", id="empty-query-param"),
        pytest.param(None, {"query": ""}, "query", id="empty-query-body"),
        pytest.param({"query": "q" * 1001}, None, "query", id="1001-query-param"),
        pytest.param(None, {"query": "q" * 1001}, "query", id="1001-query-body"),
        pytest.param({"query": "x", "limit": 0}, None, "limit", id="limit-0-param"),
        pytest.param({"query": "x", "limit": 101}, None, "limit", id="limit-101-param"),
        pytest.param({"query": "x", "limit": "ten"}, None, "limit", id="limit-not-int-param"),
        pytest.param(None, {"query": "x", "limit": 0}, "limit", id="limit-0-body"),
        pytest.param(None, {"query": "x", "limit": 101}, "limit", id="limit-101-body"),
        pytest.param({"query": "x", "type": "opinion"}, None, "type", id="type-unknown-param"),
        pytest.param(None, {"query": "x", "type": ["fact", "opinion"]}, "type", id="type-unknown-body"),
        pytest.param({"query": "x\u0000y"}, None, "query", id="NUL-query-param"),
        pytest.param(None, {"query": "x\u0000y"}, "query", id="NUL-query-body"),
    ],
)
async def test_recall_rejects_bad_input(
    client: Any, owner: OwnerKey, params: dict[str, Any] | None, json_body: dict[str, Any] | None, field: str
) -> None:
    live = await start(client, owner)
    await remember(client, live, content="x marks the spot")
    response = await client.post(live.recall_url, params=params, json=json_body, headers=live.headers)
    assert_validation(response, field)
    current = (await client.get(f"{API}/session/current", headers=live.headers)).json()
    assert current["memories_retrieved"] == 0


async def test_recall_accepts_the_limits_exactly(client: Any, owner: OwnerKey) -> None:
    live = await start(client, owner)
    stored = await remember(client, live, content="limits")
    # 1,000 characters: one meaningful word padded with stop words, which search ignores.
    long_query = "limits" + " the" * 248 + " a"
    assert len(long_query) == 1000
    for found in (
        await recall(client, live, params={"query": long_query, "limit": 100}),
        await recall(client, live, json_body={"query": long_query, "limit": 1}),
        await recall(client, live, params={"query": "limits", "limit": 1}),
    ):
        assert [m["memory_id"] for m in found["memories"]] == [stored["memory_id"]]


# --------------------------------------------------------------------------- errors and conventions


async def test_malformed_json_is_400_bad_request(client: Any, owner: OwnerKey, db: asyncpg.Connection[Any]) -> None:
    headers = {**owner.headers, "Content-Type": "application/json"}
    response = await client.post(f"{API}/agents", content=b'{"agent_id": "broken', headers=headers)
    assert_problem(response, 400, "bad_request")
    assert await count_rows(db, "agents", owner) == 0

    live = await start(client, owner)
    for payload in (b'{"content": "half', b"not json at all", b'{"content": "x",}'):
        bad = await client.post(
            live.remember_url, content=payload, headers={**live.headers, "Content-Type": "application/json"}
        )
        assert_problem(bad, 400, "bad_request")
    recall_bad = await client.post(
        live.recall_url, content=b"{query", headers={**live.headers, "Content-Type": "application/json"}
    )
    assert_problem(recall_bad, 400, "bad_request")
    assert await count_rows(db, "memories", owner, live.agent_id) == 0


async def test_body_over_the_limit_is_413(
    client: Any, owner: OwnerKey, db: asyncpg.Connection[Any], settings: Settings
) -> None:
    too_big = settings.max_body_bytes + 1
    big_agent = json.dumps({"agent_id": unique_agent(), "description": "d" * too_big}).encode()
    response = await client.post(
        f"{API}/agents", content=big_agent, headers={**owner.headers, "Content-Type": "application/json"}
    )
    assert_problem(response, 413, "payload_too_large")
    assert await count_rows(db, "agents", owner) == 0

    live = await start(client, owner)
    big_memory = json.dumps({"content": "c" * too_big}).encode()
    response = await client.post(
        live.remember_url, content=big_memory, headers={**live.headers, "Content-Type": "application/json"}
    )
    assert_problem(response, 413, "payload_too_large")
    assert await count_rows(db, "memories", owner, live.agent_id) == 0
    assert await stored_in_session(client, live) == 0


async def test_body_of_exactly_the_limit_is_read(client: Any, owner: OwnerKey, settings: Settings) -> None:
    head, tail = f'{{"agent_id": "{unique_agent()}", "description": "'.encode(), b'"}'
    exact = head + b"d" * (settings.max_body_bytes - len(head) - len(tail)) + tail
    assert len(exact) == settings.max_body_bytes
    headers = {**owner.headers, "Content-Type": "application/json"}
    # Read and judged on its content (the description is too long), not refused for its size.
    assert_validation(await client.post(f"{API}/agents", content=exact, headers=headers), "description")
    assert_problem(await client.post(f"{API}/agents", content=exact + b" ", headers=headers), 413, "payload_too_large")


async def test_unknown_route_is_404_problem(client: Any, owner: OwnerKey) -> None:
    for path in (f"{API}/nope", "/nope", f"{API}/agents/x/forget"):
        response = await client.get(path, headers=owner.headers)
        assert_problem(response, 404, "not_found")


async def test_wrong_method_is_405_problem(client: Any, owner: OwnerKey) -> None:
    live = await start(client, owner)
    for method, path in (
        ("GET", f"{API}/agents/x/remember"),
        ("GET", f"{API}/agents/x/recall"),
        ("PUT", f"{API}/agents"),
        ("GET", f"{API}/session/extend"),
    ):
        response = await client.request(method, path, headers=live.headers)
        body = assert_problem(response, 405, "method_not_allowed")
        assert body["status"] == 405


async def test_request_id_is_echoed(client: Any, owner: OwnerKey) -> None:
    live = await start(client, owner)
    calls: list[tuple[str, str, dict[str, Any], int]] = [
        ("GET", "/health/live", {}, 200),
        ("GET", f"{API}/agents", {"headers": owner.headers}, 200),
        ("POST", live.remember_url, {"headers": live.headers, "params": {"content": "rid"}}, 201),
        ("POST", live.recall_url, {"headers": live.headers, "params": {"query": "rid"}}, 200),
        ("GET", f"{API}/agents/{unique_agent()}", {"headers": owner.headers}, 404),
        ("GET", f"{API}/agents", {}, 401),
        ("POST", live.remember_url, {"headers": live.headers, "params": {"content": ""}}, 422),
        ("GET", f"{API}/nope", {}, 404),
        ("GET", f"{API}/agents/x/remember", {}, 405),
    ]
    for i, (method, path, kwargs, status) in enumerate(calls):
        rid = f"test-rid.{i}:{uuid.uuid4().hex}"
        headers = {**kwargs.get("headers", {}), "X-Request-ID": rid}
        response = await client.request(method, path, **{**kwargs, "headers": headers})
        assert response.status_code == status, (path, response.text)
        assert response.headers.get("X-Request-ID") == rid, (path, dict(response.headers))


async def test_request_id_is_generated_when_missing(client: Any, owner: OwnerKey) -> None:
    seen: set[str] = set()
    for path, headers, status in (
        ("/health/live", {}, 200),
        (f"{API}/agents", owner.headers, 200),
        (f"{API}/agents/{unique_agent()}", owner.headers, 404),
        (f"{API}/agents", {}, 401),
        (f"{API}/nope", {}, 404),
        (f"{API}/agents/bad%20id", owner.headers, 422),
    ):
        response = await client.get(path, headers=headers)
        assert response.status_code == status, (path, response.text)
        rid = response.headers.get("X-Request-ID")
        assert rid, path
        assert re.fullmatch(r"[A-Za-z0-9._:-]{1,128}", rid), (path, rid)
        seen.add(rid)
    assert len(seen) == 6  # one of its own for every request
    # A request id that is not sane (spaces, too long) is replaced, not echoed.
    for insane in ("has spaces in it", "x" * 129):
        response = await client.get("/health/live", headers={"X-Request-ID": insane})
        rid = response.headers.get("X-Request-ID")
        assert rid
        assert rid != insane
        assert re.fullmatch(r"[A-Za-z0-9._:-]{1,128}", rid)


async def test_malformed_or_oversized_errors_carry_a_request_id(
    client: Any, owner: OwnerKey, settings: Settings
) -> None:
    headers = {**owner.headers, "Content-Type": "application/json", "X-Request-ID": "bad-json-1"}
    bad = await client.post(f"{API}/agents", content=b"{", headers=headers)
    assert bad.status_code == 400
    assert bad.headers.get("X-Request-ID") == "bad-json-1"
    big = json.dumps({"agent_id": "x", "description": "d" * (settings.max_body_bytes + 1)}).encode()
    headers["X-Request-ID"] = "too-big-1"
    large = await client.post(f"{API}/agents", content=big, headers=headers)
    assert large.status_code == 413
    assert large.headers.get("X-Request-ID") == "too-big-1"


async def test_openapi_lists_every_route(client: Any) -> None:
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200, response.text
    spec = response.json()
    paths = spec["paths"]
    expected = {
        f"{API}/agents/{{agent_id}}/activate": {"post"},
        f"{API}/session/current": {"get"},
        f"{API}/status": {"get"},
        f"{API}/session/extend": {"post"},
        f"{API}/agents/{{agent_id}}/deactivate": {"post"},
        f"{API}/agents": {"get", "post"},
        f"{API}/agents/{{agent_id}}": {"get", "delete"},
        f"{API}/agents/{{agent_id}}/remember": {"post"},
        f"{API}/agents/{{agent_id}}/recall": {"post"},
        "/health/live": {"get"},
        "/health/ready": {"get"},
    }
    for path, methods in expected.items():
        assert path in paths, (path, sorted(paths))
        assert methods <= set(paths[path]), (path, sorted(paths[path]))
