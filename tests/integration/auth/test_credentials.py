"""Credentials: API keys, session tokens, and what each may reach (api.md, Conventions and Credentials)."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import UTC
from typing import Any

import asyncpg
import httpx
import jwt
import msgspec
import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from memanto_server.auth.cache import publish_revocation
from memanto_server.main import create_app
from memanto_server.settings import Settings, key_id
from tests.helpers.http import API, activate, assert_problem, parse_z, token_headers
from tests.helpers.owners import OwnerKey, unique_agent

MakeOwner = Callable[..., Awaitable[OwnerKey]]

# ----------------------------------------------------------------------------- helpers


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def json_segment(value: Any) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def unverified_payload(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})  # type: ignore[no-any-return]


def real_kid(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


def other_secret() -> str:
    secret = secrets.token_urlsafe(36)
    assert len(secret) == 48
    return secret


def assert_unauthorized(response: httpx.Response, code: str) -> dict[str, Any]:
    body = assert_problem(response, 401, code)
    challenge = response.headers.get("WWW-Authenticate", "")
    assert challenge.startswith("Bearer"), response.headers
    return body


async def memory_count(db: asyncpg.Connection[Any], owner_id: str, agent_id: str | None = None) -> int:
    if agent_id is None:
        return int(await db.fetchval("SELECT count(*) FROM memories WHERE owner_id = $1", owner_id))
    return int(
        await db.fetchval("SELECT count(*) FROM memories WHERE owner_id = $1 AND agent_id = $2", owner_id, agent_id)
    )


async def agent_owners(db: asyncpg.Connection[Any], agent_id: str) -> set[str]:
    rows = await db.fetch("SELECT owner_id::text AS owner_id FROM agents WHERE agent_id = $1", agent_id)
    return {row["owner_id"] for row in rows}


async def current(client: Any, token: str) -> dict[str, Any]:
    response = await client.get(f"{API}/session/current", headers=token_headers(token))
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def all_agent_ids(client: Any, owner: OwnerKey) -> list[str]:
    ids: list[str] = []
    cursor: str | None = None
    for _ in range(1000):
        params: dict[str, Any] = {"limit": 100}
        if cursor:
            params["cursor"] = cursor
        response = await client.get(f"{API}/agents", params=params, headers=owner.headers)
        assert response.status_code == 200, response.text
        body = response.json()
        ids.extend(agent["agent_id"] for agent in body["agents"])
        cursor = body["next_cursor"]
        if not cursor:
            return ids
    raise AssertionError("GET /agents never stopped paginating")


def token_routes(agent: str) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        ("GET", f"{API}/session/current", {}),
        ("GET", f"{API}/status", {}),
        ("POST", f"{API}/session/extend", {"extend_hours": 1}),
        ("POST", f"{API}/agents/{agent}/remember", {"content": "should never be stored"}),
        ("POST", f"{API}/agents/{agent}/recall", {"query": "stored"}),
    ]


# ----------------------------------------------------------------------------- missing credentials


async def test_key_routes_without_key_are_401_missing_credentials(
    client: Any, owner: OwnerKey, db: asyncpg.Connection[Any]
) -> None:
    existing = unique_agent()
    session = await activate(client, owner.key, existing)
    fresh = unique_agent()
    requests: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", f"{API}/agents", {}),
        ("POST", f"{API}/agents", {"json": {"agent_id": fresh}}),
        ("GET", f"{API}/agents/{existing}", {}),
        ("DELETE", f"{API}/agents/{existing}", {}),
        ("POST", f"{API}/agents/{fresh}/activate", {}),
        ("POST", f"{API}/agents/{existing}/activate", {"params": {"duration_hours": 1}}),
        ("POST", f"{API}/agents/{existing}/deactivate", {}),
    ]
    for method, url, extra in requests:
        response = await client.request(method, url, **extra)
        body = assert_unauthorized(response, "missing_credentials")
        assert body["title"], (method, url)
    # Nothing happened: no agent created, the existing one untouched and its session still live.
    assert await agent_owners(db, fresh) == set()
    assert await agent_owners(db, existing) == {owner.owner_id}
    assert (await current(client, session["session_token"]))["session_id"] == session["session_id"]


@pytest.mark.parametrize("with_key", [False, True], ids=["nothing", "api-key-only"])
async def test_token_routes_without_token_are_401_missing_credentials(
    client: Any, owner: OwnerKey, db: asyncpg.Connection[Any], with_key: bool
) -> None:
    agent = unique_agent()
    session = await activate(client, owner.key, agent, duration_hours=1)
    headers = owner.headers if with_key else {}
    for method, url, params in token_routes(agent):
        response = await client.request(method, url, params=params, headers=headers)
        assert_unauthorized(response, "missing_credentials")
    # An empty token header is no token either.
    empty = await client.get(f"{API}/session/current", headers={"X-Session-Token": "", **headers})
    assert_unauthorized(empty, "missing_credentials")
    assert await memory_count(db, owner.owner_id) == 0
    live = await current(client, session["session_token"])
    assert live["expires_at"] == session["expires_at"]  # the extend did not happen
    assert live["memories_stored"] == 0
    assert live["memories_retrieved"] == 0


# ----------------------------------------------------------------------------- API keys


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(lambda key: {"Authorization": f"Bearer {key}"}, id="authorization-bearer"),
        pytest.param(lambda key: {"Authorization": f"bearer {key}"}, id="authorization-bearer-lowercase"),
        pytest.param(lambda key: {"X-Api-Key": key}, id="x-api-key"),
    ],
)
async def test_valid_key_is_accepted_in_either_header(
    client: Any, owner: OwnerKey, db: asyncpg.Connection[Any], headers: Callable[[str], dict[str, str]]
) -> None:
    agent = unique_agent()
    activated = await client.post(f"{API}/agents/{agent}/activate", headers=headers(owner.key))
    assert activated.status_code == 201, activated.text
    assert await agent_owners(db, agent) == {owner.owner_id}
    listed = await client.get(f"{API}/agents", params={"limit": 100}, headers=headers(owner.key))
    assert listed.status_code == 200, listed.text
    shown = await client.get(f"{API}/agents/{agent}", headers=headers(owner.key))
    assert shown.status_code == 200, shown.text
    assert shown.json()["active_session"]["session_id"] == activated.json()["session_id"]
    # Beside a token, too.
    token = activated.json()["session_token"]
    beside = await client.get(f"{API}/session/current", headers={"X-Session-Token": token, **headers(owner.key)})
    assert beside.status_code == 200, beside.text


@pytest.mark.parametrize(
    "bad_key",
    [
        pytest.param(lambda: "mk_" + secrets.token_urlsafe(32), id="unknown-well-formed"),
        pytest.param(lambda: "mk_", id="prefix-only"),
        pytest.param(lambda: "not-a-key", id="no-prefix"),
        pytest.param(lambda: "mk_" + "x" * 5000, id="very-long"),
        pytest.param(lambda: "mk_ with spaces\tand tab", id="spaces"),
    ],
)
@pytest.mark.parametrize("header", ["authorization", "x-api-key"])
async def test_unknown_or_malformed_key_is_401_invalid_api_key(
    client: Any, owner: OwnerKey, db: asyncpg.Connection[Any], bad_key: Callable[[], str], header: str
) -> None:
    key = bad_key()
    headers = {"Authorization": f"Bearer {key}"} if header == "authorization" else {"X-Api-Key": key}
    agent = unique_agent()
    assert_unauthorized(await client.get(f"{API}/agents", headers=headers), "invalid_api_key")
    assert_unauthorized(await client.post(f"{API}/agents/{agent}/activate", headers=headers), "invalid_api_key")
    assert_unauthorized(
        await client.post(f"{API}/agents", json={"agent_id": agent}, headers=headers), "invalid_api_key"
    )
    assert await agent_owners(db, agent) == set()

    # A bad key beside a good token is still a bad key, and nothing is stored.
    mine = unique_agent()
    session = await activate(client, owner.key, mine)
    beside = await client.post(
        f"{API}/agents/{mine}/remember",
        params={"content": "beside a bad key"},
        headers={"X-Session-Token": session["session_token"], **headers},
    )
    assert_unauthorized(beside, "invalid_api_key")
    assert await memory_count(db, owner.owner_id, mine) == 0


async def test_revoked_key_is_rejected_at_once_although_cached(
    client: Any, make_owner: MakeOwner, db: asyncpg.Connection[Any], settings: Settings
) -> None:
    owner = await make_owner("to-be-revoked")
    # The key cache only holds entries while subscribed to the revocation channel:
    # wait for that, so the uses below really do fill the cache.
    assert await client.app.state.services.keys.wait_subscribed(5.0)
    agent = unique_agent()
    session = await activate(client, owner.key, agent)
    for _ in range(2):
        assert (await client.get(f"{API}/agents/{agent}", headers=owner.headers)).status_code == 200

    revoked = await db.fetchval(
        "UPDATE api_keys SET revoked_at = now() WHERE key_id = $1 AND revoked_at IS NULL RETURNING key_id",
        owner.key_id,
    )
    assert revoked == owner.key_id
    redis = Redis.from_url(settings.redis_url)
    try:
        await publish_revocation(redis, settings.redis_prefix, owner.key_id)
    finally:
        await redis.aclose()

    deadline = time.monotonic() + 1.0
    while True:
        response = await client.get(f"{API}/agents/{agent}", headers=owner.headers)
        if response.status_code != 200 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.02)
    assert_unauthorized(response, "invalid_api_key")

    fresh = unique_agent()
    assert_unauthorized(await client.post(f"{API}/agents/{fresh}/activate", headers=owner.headers), "invalid_api_key")
    assert_unauthorized(await client.get(f"{API}/agents", headers={"X-Api-Key": owner.key}), "invalid_api_key")
    assert_unauthorized(await client.delete(f"{API}/agents/{agent}", headers=owner.headers), "invalid_api_key")
    beside = await client.post(
        f"{API}/agents/{agent}/remember",
        params={"content": "with a revoked key"},
        headers=token_headers(session["session_token"], owner.key),
    )
    assert_unauthorized(beside, "invalid_api_key")
    assert await agent_owners(db, fresh) == set()
    assert await agent_owners(db, agent) == {owner.owner_id}
    assert await memory_count(db, owner.owner_id) == 0


# ----------------------------------------------------------------------------- bad session tokens


def forged(token: str) -> str:
    header = jwt.get_unverified_header(token)
    return jwt.encode(unverified_payload(token), other_secret(), algorithm="HS256", headers={"kid": header["kid"]})


def tampered(token: str, agent_id: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(b64url_decode(payload))
    claims["agent_id"] = agent_id
    claims["sub"] = f"{claims['owner_id']}:{agent_id}"
    return f"{header}.{json_segment(claims)}.{signature}"


def alg_none(token: str) -> str:
    header = {"alg": "none", "typ": "JWT", "kid": real_kid(token)}
    return f"{json_segment(header)}.{json_segment(unverified_payload(token))}."


def unknown_kid(token: str, secret: str) -> str:
    return jwt.encode(unverified_payload(token), secret, algorithm="HS256", headers={"kid": "0123456789abcdef"})


def garbage_tokens(token: str) -> list[str]:
    header, payload, signature = token.split(".")
    return [
        "garbage",
        "a.b.c",
        "...",
        "eyJhbGciOiJIUzI1NiJ9..",
        f"{header}.{payload}",  # two segments
        f"{header}.{payload}.{signature}.extra",
        f"{json_segment([1, 2])}.{payload}.{signature}",  # header not an object
        f"{b64url(b'not json')}.{payload}.{signature}",
        f"{json_segment({'alg': 'HS256', 'kid': 7})}.{payload}.{signature}",  # kid not a string
        f"{json_segment({'alg': 'HS256', 'kid': real_kid(token)})}.{b64url(b'not json')}.{signature}",
        f"{header}.!!!.{signature}",
        "x" * 4000,
    ]


async def test_forged_tampered_unsigned_and_garbage_tokens_are_401_invalid_token(
    client: Any, owner: OwnerKey, db: asyncpg.Connection[Any], settings: Settings
) -> None:
    agent, other = unique_agent(), unique_agent()
    session = await activate(client, owner.key, agent, duration_hours=1)
    other_session = await activate(client, owner.key, other, duration_hours=1)
    token = session["session_token"]
    assert real_kid(token) == key_id(settings.secret_key)

    bad = {
        "forged": forged(token),
        "tampered-agent": tampered(token, other),
        "alg-none": alg_none(token),
        "unknown-kid-foreign-secret": unknown_kid(token, other_secret()),
        "unknown-kid-real-secret": unknown_kid(token, settings.secret_key),
        **{f"garbage-{i}": value for i, value in enumerate(garbage_tokens(token))},
    }
    for name, value in bad.items():
        for method, url, params in [*token_routes(agent), *token_routes(other)]:
            response = await client.request(method, url, params=params, headers=token_headers(value))
            assert response.status_code == 401, (name, url, response.text)
            assert_unauthorized(response, "invalid_token")
        # The same with the owner's own key beside the token: the token is still what fails.
        beside = await client.get(f"{API}/session/current", headers=token_headers(value, owner.key))
        assert_unauthorized(beside, "invalid_token")
        deactivate = await client.post(f"{API}/agents/{other}/deactivate", headers=token_headers(value))
        assert_unauthorized(deactivate, "invalid_token")

    # Nothing was stored, extended or ended by any of them; the real tokens still work.
    assert await memory_count(db, owner.owner_id) == 0
    for real in (session, other_session):
        live = await current(client, real["session_token"])
        assert live["session_id"] == real["session_id"]
        assert live["expires_at"] == real["expires_at"]
        assert live["memories_stored"] == 0
        assert live["memories_retrieved"] == 0
        assert live["extensions"] == 0


async def test_validly_signed_token_with_broken_claims_is_401_invalid_token(
    client: Any, owner: OwnerKey, settings: Settings
) -> None:
    agent = unique_agent()
    session = await activate(client, owner.key, agent)
    claims = unverified_payload(session["session_token"])
    kid = key_id(settings.secret_key)
    now = int(time.time())
    variants: dict[str, dict[str, Any]] = {
        "wrong-issuer": {**claims, "iss": "someone-else"},
        "no-session-id": {k: v for k, v in claims.items() if k != "session_id"},
        "no-exp": {k: v for k, v in claims.items() if k != "exp"},
        "agent-id-not-a-string": {**claims, "agent_id": 12345},
        "issued-in-the-future": {**claims, "iat": now + 3600},
    }
    for name, payload in variants.items():
        token = jwt.encode(payload, settings.secret_key, algorithm="HS256", headers={"kid": kid})
        response = await client.get(f"{API}/session/current", headers=token_headers(token))
        assert response.status_code == 401, (name, response.text)
        assert_unauthorized(response, "invalid_token")
    assert (await current(client, session["session_token"]))["session_id"] == session["session_id"]


async def test_token_past_its_exp_is_401_session_expired(
    client: Any, owner: OwnerKey, db: asyncpg.Connection[Any], settings: Settings
) -> None:
    agent = unique_agent()
    session = await activate(client, owner.key, agent)
    now = int(time.time())
    # The claims of a session that is live in the store, signed with the real secret: only `exp` is wrong.
    payload = {**unverified_payload(session["session_token"]), "iat": now - 7200, "exp": now - 60}
    expired = jwt.encode(payload, settings.secret_key, algorithm="HS256", headers={"kid": key_id(settings.secret_key)})
    for method, url, params in token_routes(agent):
        response = await client.request(method, url, params=params, headers=token_headers(expired))
        assert_unauthorized(response, "session_expired")
    assert_unauthorized(
        await client.post(f"{API}/agents/{agent}/deactivate", headers=token_headers(expired, owner.key)),
        "session_expired",
    )
    assert await memory_count(db, owner.owner_id) == 0
    live = await current(client, session["session_token"])
    assert live["expires_at"] == session["expires_at"]
    assert live["memories_stored"] == 0


# ----------------------------------------------------------------------------- secret rotation


async def test_secret_rotation_keeps_old_tokens_valid_only_while_listed(
    make_owner: MakeOwner, settings: Settings
) -> None:
    owner = await make_owner("rotation")
    old_secret, new_secret = settings.secret_key, secrets.token_urlsafe(48)
    old_agent, new_agent = unique_agent("old"), unique_agent("new")

    async with AsyncTestClient(app=create_app(settings)) as before:
        old = await activate(before, owner.key, old_agent)
    assert real_kid(old["session_token"]) == key_id(old_secret)

    rotated = msgspec.structs.replace(settings, secret_key=new_secret, previous_secret_keys=(old_secret,))
    async with AsyncTestClient(app=create_app(rotated)) as after:
        assert (await current(after, old["session_token"]))["session_id"] == old["session_id"]
        stored = await after.post(
            f"{API}/agents/{old_agent}/remember",
            params={"content": "written with a pre-rotation token"},
            headers=token_headers(old["session_token"], owner.key),
        )
        assert stored.status_code == 201, stored.text
        new = await activate(after, owner.key, new_agent)
        assert real_kid(new["session_token"]) == key_id(new_secret)
        assert (await current(after, new["session_token"]))["session_id"] == new["session_id"]

    dropped = msgspec.structs.replace(settings, secret_key=new_secret, previous_secret_keys=())
    async with AsyncTestClient(app=create_app(dropped)) as later:
        assert_unauthorized(
            await later.get(f"{API}/session/current", headers=token_headers(old["session_token"])), "invalid_token"
        )
        assert_unauthorized(
            await later.post(
                f"{API}/agents/{old_agent}/remember",
                params={"content": "must not be stored"},
                headers=token_headers(old["session_token"]),
            ),
            "invalid_token",
        )
        # The session itself is still live: only its token's secret is no longer trusted.
        shown = await later.get(f"{API}/agents/{old_agent}", headers=owner.headers)
        assert shown.json()["active_session"]["session_id"] == old["session_id"]
        assert shown.json()["memory_count"] == 1
        assert (await current(later, new["session_token"]))["session_id"] == new["session_id"]


# ----------------------------------------------------------------------------- wrong owner, wrong agent


@pytest.mark.parametrize("key_header", ["Authorization", "X-Api-Key"])
async def test_other_owners_key_beside_token_is_403_owner_mismatch(
    client: Any, make_owner: MakeOwner, db: asyncpg.Connection[Any], key_header: str
) -> None:
    alice, bob = await make_owner("alice"), await make_owner("bob")
    agent = unique_agent()
    session = await activate(client, alice.key, agent, duration_hours=1)
    bob_key = f"Bearer {bob.key}" if key_header == "Authorization" else bob.key
    headers = {"X-Session-Token": session["session_token"], key_header: bob_key}

    for method, url, params in token_routes(agent):
        response = await client.request(method, url, params=params, headers=headers)
        assert_problem(response, 403, "owner_mismatch")
    deactivate = await client.post(f"{API}/agents/{agent}/deactivate", headers=headers)
    assert_problem(deactivate, 403, "owner_mismatch")

    assert await memory_count(db, alice.owner_id) == 0
    assert await memory_count(db, bob.owner_id) == 0
    assert await agent_owners(db, agent) == {alice.owner_id}
    live = await current(client, session["session_token"])
    assert live["session_id"] == session["session_id"]
    assert live["expires_at"] == session["expires_at"]
    assert live["memories_stored"] == 0
    assert live["memories_retrieved"] == 0


async def test_token_of_one_agent_on_another_agents_routes_is_403_agent_mismatch(
    client: Any, owner: OwnerKey, db: asyncpg.Connection[Any]
) -> None:
    agent_a, agent_b = unique_agent("a"), unique_agent("b")
    session_a = await activate(client, owner.key, agent_a)
    session_b = await activate(client, owner.key, agent_b)
    stored = await client.post(
        f"{API}/agents/{agent_b}/remember",
        params={"content": "bravo secret"},
        headers=token_headers(session_b["session_token"]),
    )
    assert stored.status_code == 201, stored.text

    for key in (None, owner.key):
        headers = token_headers(session_a["session_token"], key)
        remember = await client.post(f"{API}/agents/{agent_b}/remember", params={"content": "from a"}, headers=headers)
        assert_problem(remember, 403, "agent_mismatch")
        body = await client.post(f"{API}/agents/{agent_b}/remember", json={"content": "from a"}, headers=headers)
        assert_problem(body, 403, "agent_mismatch")
        recall = await client.post(f"{API}/agents/{agent_b}/recall", params={"query": "bravo"}, headers=headers)
        assert_problem(recall, 403, "agent_mismatch")
        assert "bravo secret" not in recall.text

    assert await memory_count(db, owner.owner_id, agent_a) == 0
    assert await memory_count(db, owner.owner_id, agent_b) == 1
    live_a = await current(client, session_a["session_token"])
    assert live_a["memories_stored"] == 0
    assert live_a["memories_retrieved"] == 0
    live_b = await current(client, session_b["session_token"])
    assert live_b["memories_stored"] == 1
    assert live_b["memories_retrieved"] == 0


# ----------------------------------------------------------------------------- owner isolation


async def test_owners_never_see_or_touch_each_others_agents(
    client: Any, make_owner: MakeOwner, db: asyncpg.Connection[Any]
) -> None:
    alice, bob = await make_owner("alice"), await make_owner("bob")
    agent = unique_agent("alice")
    session = await activate(client, alice.key, agent)
    stored = await client.post(
        f"{API}/agents/{agent}/remember",
        params={"content": "alice only"},
        headers=token_headers(session["session_token"]),
    )
    assert stored.status_code == 201, stored.text
    bobs_own = unique_agent("bob")
    await activate(client, bob.key, bobs_own)

    assert_problem(await client.get(f"{API}/agents/{agent}", headers=bob.headers), 404, "agent_not_found")
    assert_problem(await client.delete(f"{API}/agents/{agent}", headers=bob.headers), 404, "agent_not_found")
    assert_problem(await client.post(f"{API}/agents/{agent}/deactivate", headers=bob.headers), 404, "agent_not_found")
    bob_sees = await all_agent_ids(client, bob)
    assert bobs_own in bob_sees
    assert agent not in bob_sees
    alice_sees = await all_agent_ids(client, alice)
    assert agent in alice_sees
    assert bobs_own not in alice_sees

    # Alice's agent, memory and session are all untouched.
    shown = await client.get(f"{API}/agents/{agent}", headers=alice.headers)
    assert shown.status_code == 200, shown.text
    assert shown.json()["memory_count"] == 1
    assert shown.json()["active_session"]["session_id"] == session["session_id"]
    assert (await current(client, session["session_token"]))["session_id"] == session["session_id"]
    assert await memory_count(db, alice.owner_id, agent) == 1


async def test_same_agent_name_under_two_owners_are_two_agents(
    client: Any, make_owner: MakeOwner, db: asyncpg.Connection[Any]
) -> None:
    alice, bob = await make_owner("alice"), await make_owner("bob")
    agent = unique_agent("shared")
    alice_session = await activate(client, alice.key, agent)
    bob_session = await activate(client, bob.key, agent)

    assert bob_session["superseded_session_id"] is None
    assert bob_session["session_id"] != alice_session["session_id"]
    assert await agent_owners(db, agent) == {alice.owner_id, bob.owner_id}
    assert (await current(client, alice_session["session_token"]))["session_id"] == alice_session["session_id"]
    assert (await current(client, bob_session["session_token"]))["session_id"] == bob_session["session_id"]

    for who, session, text in ((alice, alice_session, "alpha note"), (bob, bob_session, "bravo note")):
        response = await client.post(
            f"{API}/agents/{agent}/remember",
            params={"content": text},
            headers=token_headers(session["session_token"], who.key),
        )
        assert response.status_code == 201, response.text
    recalled = await client.post(
        f"{API}/agents/{agent}/recall", params={"query": "note"}, headers=token_headers(bob_session["session_token"])
    )
    assert recalled.status_code == 200, recalled.text
    assert [m["content"] for m in recalled.json()["memories"]] == ["bravo note"]

    alice_view = (await client.get(f"{API}/agents/{agent}", headers=alice.headers)).json()
    bob_view = (await client.get(f"{API}/agents/{agent}", headers=bob.headers)).json()
    assert alice_view["active_session"]["session_id"] == alice_session["session_id"]
    assert bob_view["active_session"]["session_id"] == bob_session["session_id"]
    assert alice_view["memory_count"] == 1
    assert bob_view["memory_count"] == 1

    # Bob ending (and deleting) his agent of that name leaves Alice's alone.
    ended = await client.post(f"{API}/agents/{agent}/deactivate", headers=bob.headers)
    assert ended.status_code == 200, ended.text
    assert ended.json()["session_id"] == bob_session["session_id"]
    assert (await client.delete(f"{API}/agents/{agent}", headers=bob.headers)).status_code == 204
    assert await agent_owners(db, agent) == {alice.owner_id}
    assert (await current(client, alice_session["session_token"]))["session_id"] == alice_session["session_id"]
    assert await memory_count(db, alice.owner_id, agent) == 1


# ----------------------------------------------------------------------------- X-Session-Expires-At


async def test_every_token_response_carries_the_live_expiry(client: Any, owner: OwnerKey) -> None:
    agent = unique_agent()
    session = await activate(client, owner.key, agent, duration_hours=2)
    headers = token_headers(session["session_token"])
    expiry = session["expires_at"]

    responses = [
        await client.get(f"{API}/session/current", headers=headers),
        await client.get(f"{API}/status", headers=headers),
        await client.post(f"{API}/agents/{agent}/remember", params={"content": "header check"}, headers=headers),
        await client.post(f"{API}/agents/{agent}/remember", json={"content": "header check body"}, headers=headers),
        await client.post(f"{API}/agents/{agent}/recall", params={"query": "header"}, headers=headers),
        await client.post(f"{API}/agents/{agent}/recall", json={"query": "header"}, headers=headers),
    ]
    for response in responses:
        assert response.status_code in (200, 201), response.text
        assert response.headers.get("X-Session-Expires-At") == expiry, (response.request.url, response.headers)

    extended = await client.post(f"{API}/session/extend", params={"extend_hours": 1}, headers=headers)
    assert extended.status_code == 200, extended.text
    new_expiry = extended.json()["new_expires_at"]
    assert parse_z(new_expiry) > parse_z(expiry)
    assert extended.headers.get("X-Session-Expires-At") == new_expiry
    assert parse_z(new_expiry).tzinfo == UTC

    # After the extension every token route reports the new, live expiry.
    for response in (
        await client.get(f"{API}/session/current", headers=headers),
        await client.post(f"{API}/agents/{agent}/remember", params={"content": "later"}, headers=headers),
        await client.post(f"{API}/agents/{agent}/recall", params={"query": "later"}, headers=headers),
    ):
        assert response.status_code in (200, 201), response.text
        assert response.headers.get("X-Session-Expires-At") == new_expiry
