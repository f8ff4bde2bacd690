"""Session state stays exact when Redis's replies are lost: a real server, a Redis of the test's own.

`memanto-server serve` talks to a private `redis-server` through a TCP proxy. For activate,
extend, remember and recall counting, and deactivate, the proxy forwards the call and then
cuts the connection instead of forwarding Redis's reply (Redis did the work; the app never
hears of it). Then Redis is stalled by a Lua busy loop for longer than the app's socket
timeout, with calls waiting in its sockets.

Whatever happens, no call is applied twice, and every client either gets the real outcome
(the call delivered again and answered with its first result) or a 503 with `Retry-After`
whose retry converges on one application: one more memory counted, one extension, the
session's true end and counters in the history.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import pytest
import redis

from memanto_server.sessions.store import script_source
from memanto_server.settings import Settings
from tests.helpers.http import API, activate, assert_problem, assert_unavailable, parse_z, token_headers
from tests.helpers.owners import OwnerKey, unique_agent
from tests.helpers.processes import RedisProcess, private_redis, running_server, settings_env
from tests.helpers.proxy import TcpProxy, tcp_proxy

pytestmark = pytest.mark.slow

TIMEOUT = httpx.Timeout(15.0)
REDIS_TIMEOUT = 0.25  # the app's MEMANTO_REDIS_TIMEOUT here
BUSY_THRESHOLD_MS = 600  # the private Redis's busy-reply-threshold, for a loop that is killed


def marker(script: str) -> bytes:
    """What identifies a session script on the wire: its SHA, sent with every EVALSHA."""
    return hashlib.sha1(script_source(script).encode()).hexdigest().encode()  # noqa: S324 - Redis's script id


class Faulty:
    def __init__(self, base_url: str, proxy: TcpProxy, redis_server: RedisProcess) -> None:
        self.base_url = base_url
        self.proxy = proxy
        self.redis_server = redis_server


@pytest.fixture(scope="module")
def faulty(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Faulty]:
    log_path = tmp_path_factory.mktemp("lost-replies") / "server.log"
    with private_redis() as redis_server, tcp_proxy("127.0.0.1", redis_server.port) as proxy:
        env = settings_env(settings)
        env |= {"MEMANTO_REDIS_URL": f"redis://127.0.0.1:{proxy.port}/0", "MEMANTO_REDIS_TIMEOUT": str(REDIS_TIMEOUT)}
        with running_server(env, log_path=log_path) as base_url:
            yield Faulty(base_url, proxy, redis_server)
    log = log_path.read_text()
    assert "Traceback" not in log, log  # 503s are warnings; nothing was a 500


@pytest.fixture
async def client(faulty: Faulty, owner: OwnerKey) -> Any:
    faulty.proxy.clear()
    async with httpx.AsyncClient(base_url=faulty.base_url, timeout=TIMEOUT) as http:
        await warm_up(http, owner)  # every script loaded: a cut reply is a script's, not NOSCRIPT's
        yield http
    faulty.proxy.clear()


async def warm_up(client: httpx.AsyncClient, owner: OwnerKey) -> None:
    agent = unique_agent("warm")
    session = await activate(client, owner.key, agent)
    headers = token_headers(session["session_token"])
    for method, route, params in (
        ("POST", f"agents/{agent}/remember", {"content": "warm"}),
        ("POST", f"agents/{agent}/recall", {"query": "warm"}),
        ("POST", "session/extend", {"extend_hours": 1}),
        ("POST", f"agents/{agent}/deactivate", {}),
    ):
        response = await client.request(method, f"{API}/{route}", params=params, headers=headers)
        assert response.status_code < 300, response.text
    await activate(client, owner.key, agent)
    await activate(client, owner.key, agent)


async def current(client: httpx.AsyncClient, token: str) -> dict[str, Any]:
    response = await client.get(f"{API}/session/current", headers=token_headers(token))
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def history(client: httpx.AsyncClient, owner: OwnerKey, agent: str) -> dict[str, dict[str, Any]]:
    response = await client.get(f"{API}/agents/{agent}/sessions", headers=owner.headers)
    assert response.status_code == 200, response.text
    return {s["session_id"]: s for s in response.json()["sessions"]}


async def until_answered(request: Any, attempts: int = 20) -> httpx.Response:
    """Send `request()` until it is not a 503, as a client honouring `Retry-After` would (sooner)."""
    for _ in range(attempts):
        response: httpx.Response = await request()
        if response.status_code != 503:
            return response
        assert_unavailable(response)
        await asyncio.sleep(0.1)
    raise AssertionError(f"still 503 after {attempts} attempts: {response.text}")


async def test_a_reply_lost_once_is_answered_with_the_real_outcome(
    client: httpx.AsyncClient, faulty: Faulty, owner: OwnerKey, db: asyncpg.Connection[Any]
) -> None:
    proxy, agent = faulty.proxy, unique_agent("cut")
    first = await activate(client, owner.key, agent)
    one = await client.post(
        f"{API}/agents/{agent}/remember", params={"content": "one"}, headers=token_headers(first["session_token"])
    )
    assert one.status_code == 201, one.text
    cuts = proxy.cuts

    # Activate: the second delivery supersedes the first session, not the new one.
    proxy.cut_after_reply(marker("activate.lua"))
    second = await activate(client, owner.key, agent)
    assert second["superseded_session_id"] == first["session_id"]
    token, headers = second["session_token"], token_headers(second["session_token"])
    assert_problem(
        await client.get(f"{API}/session/current", headers=token_headers(first["session_token"])),
        401,
        "session_superseded",
    )
    assert (await current(client, token))["session_id"] == second["session_id"]
    shown = await history(client, owner, agent)
    assert shown[second["session_id"]]["end_reason"] == "active"
    assert (shown[first["session_id"]]["end_reason"], shown[first["session_id"]]["memories_stored"]) == (
        "superseded",
        1,
    )

    # Remember and recall: counted once each.
    proxy.cut_after_reply(marker("touch.lua"))
    stored = await client.post(f"{API}/agents/{agent}/remember", params={"content": "two words"}, headers=headers)
    assert stored.status_code == 201, stored.text
    proxy.cut_after_reply(marker("touch.lua"))
    recalled = await client.post(f"{API}/agents/{agent}/recall", params={"query": "two"}, headers=headers)
    assert recalled.status_code == 200, recalled.text
    assert recalled.json()["count"] == 1
    now = await current(client, token)
    assert (now["memories_stored"], now["memories_retrieved"]) == (1, 1)

    # Extend: the hours added once, and the answer says so.
    proxy.cut_after_reply(marker("extend.lua"))
    extended = await client.post(f"{API}/session/extend", params={"extend_hours": 2}, headers=headers)
    assert extended.status_code == 200, extended.text
    body = extended.json()
    assert parse_z(body["previous_expires_at"]) == parse_z(second["expires_at"])
    assert parse_z(body["new_expires_at"]) - parse_z(second["expires_at"]) == timedelta(hours=2)
    now = await current(client, token)
    assert (now["expires_at"], now["extensions"]) == (body["new_expires_at"], 1)

    # Deactivate: the second delivery finds the session ended by the first; the end and the
    # counters are recorded once and answered.
    proxy.cut_after_reply(marker("end.lua"))
    ended = await client.post(f"{API}/agents/{agent}/deactivate", headers=headers)
    assert ended.status_code == 200, ended.text
    assert (ended.json()["memories_stored"], ended.json()["memories_retrieved"]) == (1, 1)
    assert_problem(await client.get(f"{API}/session/current", headers=headers), 401, "session_ended")
    row = await db.fetchrow("SELECT * FROM sessions WHERE session_id = $1", second["session_id"])
    assert (row["end_reason"], row["memories_stored"], row["memories_retrieved"], row["extensions"]) == (
        "deactivated",
        1,
        1,
        1,
    )
    assert row["ended_at"].replace(microsecond=0) == parse_z(ended.json()["ended_at"])
    assert proxy.cuts - cuts == 5


async def test_replies_lost_twice_give_503_and_the_retry_converges(
    client: httpx.AsyncClient, faulty: Faulty, owner: OwnerKey, db: asyncpg.Connection[Any]
) -> None:
    proxy, agent = faulty.proxy, unique_agent("twice")
    first = await activate(client, owner.key, agent)
    token, headers = first["session_token"], token_headers(first["session_token"])

    # Remember: 503, then the retry (same Idempotency-Key) stores it and counts it, once.
    proxy.cut_after_reply(marker("touch.lua"), times=2)
    keyed = {**headers, "Idempotency-Key": "twice-1"}
    assert_unavailable(
        await client.post(f"{API}/agents/{agent}/remember", params={"content": "alpha beta"}, headers=keyed)
    )
    stored = await until_answered(
        lambda: client.post(f"{API}/agents/{agent}/remember", params={"content": "alpha beta"}, headers=keyed)
    )
    assert stored.status_code == 201, stored.text

    proxy.cut_after_reply(marker("touch.lua"), times=2)
    assert_unavailable(await client.post(f"{API}/agents/{agent}/recall", params={"query": "alpha"}, headers=headers))
    recalled = await until_answered(
        lambda: client.post(f"{API}/agents/{agent}/recall", params={"query": "alpha"}, headers=headers)
    )
    assert recalled.json()["count"] == 1

    proxy.cut_after_reply(marker("extend.lua"), times=2)
    assert_unavailable(await client.post(f"{API}/session/extend", params={"extend_hours": 1}, headers=headers))
    extended = await until_answered(
        lambda: client.post(f"{API}/session/extend", params={"extend_hours": 1}, headers=headers)
    )
    assert extended.status_code == 200, extended.text
    now = await current(client, token)
    assert (now["memories_stored"], now["memories_retrieved"], now["extensions"]) == (1, 1, 1)
    assert parse_z(now["expires_at"]) - parse_z(first["expires_at"]) == timedelta(hours=1)
    count = await db.fetchval(
        "SELECT count(*) FROM memories WHERE owner_id = $1::uuid AND agent_id = $2", owner.owner_id, agent
    )
    assert count == 1

    # Activate: 503; the retry's session supersedes whatever the lost one did, and the first
    # session's true end and counters reach the history.
    proxy.cut_after_reply(marker("activate.lua"), times=2)
    assert_unavailable(await client.post(f"{API}/agents/{agent}/activate", headers=owner.headers))
    retried = await until_answered(lambda: client.post(f"{API}/agents/{agent}/activate", headers=owner.headers))
    assert retried.status_code == 201, retried.text
    second = retried.json()
    shown = await history(client, owner, agent)
    assert shown[second["session_id"]]["end_reason"] == "active"
    old = shown[first["session_id"]]
    assert (old["end_reason"], old["memories_stored"], old["memories_retrieved"], old["extensions"]) == (
        "superseded",
        1,
        1,
        1,
    )
    assert [s["end_reason"] for s in shown.values()].count("active") == 1

    # Deactivate: 503 after the session ended in Redis; the retry completes it.
    headers = token_headers(second["session_token"])
    proxy.cut_after_reply(marker("end.lua"), times=2)
    assert_unavailable(await client.post(f"{API}/agents/{agent}/deactivate", headers=headers))
    ended = await until_answered(lambda: client.post(f"{API}/agents/{agent}/deactivate", headers=headers))
    assert ended.status_code == 200, ended.text
    assert ended.json()["session_id"] == second["session_id"]
    assert_problem(await client.post(f"{API}/agents/{agent}/deactivate", headers=headers), 401, "session_ended")
    assert (await history(client, owner, agent))[second["session_id"]]["end_reason"] == "deactivated"


def stall(port: int, seconds: float | None) -> threading.Thread:
    """Redis busy in a Lua loop, from a connection of the test's own: for `seconds`, or (None)
    until `SCRIPT KILL`. Returns the thread waiting for the loop's end.

    A loop of `seconds` stays under Redis's busy threshold: Redis reads nothing meanwhile,
    then runs what waits in its sockets, calls whose sender gave up on them included. Past
    the threshold (the endless loop), Redis answers `BUSY` to what it reads, and runs none of it.
    """
    with redis.Redis(port=port) as admin:
        admin.config_set("busy-reply-threshold", BUSY_THRESHOLD_MS if seconds is None else 5000)
    loop = (
        "local t = redis.call('TIME'); local start = t[1] * 1000000 + t[2]; "
        "while true do local n = redis.call('TIME'); "
        "if n[1] * 1000000 + n[2] - start > tonumber(ARGV[1]) then return 1 end end"
    )

    def run() -> None:
        with redis.Redis(port=port, socket_timeout=10) as conn, contextlib.suppress(redis.ResponseError):
            if seconds is None:
                conn.eval("while true do end", 0)  # ends with an error once killed
            else:
                conn.eval(loop, 0, int(seconds * 1_000_000))

    thread = threading.Thread(target=run, name="redis-stall")
    thread.start()
    time.sleep(0.05)  # the loop has started: Redis answers nobody
    return thread


async def end_stall(thread: threading.Thread, port: int, killed: bool) -> None:
    if killed:
        await asyncio.sleep(BUSY_THRESHOLD_MS / 1000 + 0.1)  # SCRIPT KILL is heard after the threshold
        with redis.Redis(port=port, socket_timeout=10) as admin:
            admin.script_kill()
    await asyncio.to_thread(thread.join, 10)
    assert not thread.is_alive()


@pytest.mark.parametrize(
    "stalled",
    [0.4, 0.8, None],
    ids=["stalled-past-one-timeout", "stalled-past-both-deliveries", "busy-until-script-kill"],
)
async def test_a_stalled_redis_applies_each_call_once(
    client: httpx.AsyncClient, faulty: Faulty, owner: OwnerKey, stalled: float | None
) -> None:
    port, agent = faulty.redis_server.port, unique_agent("stall")
    first = await activate(client, owner.key, agent)
    token, headers = first["session_token"], token_headers(first["session_token"])
    remembered = await client.post(f"{API}/agents/{agent}/remember", params={"content": "gamma delta"}, headers=headers)
    assert remembered.status_code == 201, remembered.text

    # Counting calls and an extension, sent while Redis is stalled.
    thread = stall(port, stalled)
    keyed = {**headers, "Idempotency-Key": f"stall-{agent}"}
    calls = {
        "remember": lambda: client.post(f"{API}/agents/{agent}/remember", params={"content": "epsilon"}, headers=keyed),
        "recall": lambda: client.post(f"{API}/agents/{agent}/recall", params={"query": "gamma"}, headers=headers),
        "extend": lambda: client.post(f"{API}/session/extend", params={"extend_hours": 1}, headers=headers),
    }
    answers = dict(zip(calls, await asyncio.gather(*(call() for call in calls.values())), strict=True))
    await end_stall(thread, port, killed=stalled is None)
    for name, answer in answers.items():
        if answer.status_code == 503:
            assert_unavailable(answer)
            answers[name] = await until_answered(calls[name])
    assert [answers[name].status_code for name in calls] == [201, 200, 200], [a.text for a in answers.values()]
    now = await current(client, token)
    assert (now["memories_stored"], now["memories_retrieved"], now["extensions"]) == (2, 1, 1)
    assert parse_z(now["expires_at"]) - parse_z(first["expires_at"]) == timedelta(hours=1)

    # A deactivation sent while Redis is stalled.
    thread = stall(port, stalled)
    deactivate = lambda: client.post(f"{API}/agents/{agent}/deactivate", headers=headers)  # noqa: E731
    ended = await deactivate()
    await end_stall(thread, port, killed=stalled is None)
    if ended.status_code == 503:
        ended = await until_answered(deactivate)
    assert ended.status_code == 200, ended.text
    assert (ended.json()["memories_stored"], ended.json()["memories_retrieved"]) == (2, 1)
    record = (await history(client, owner, agent))[first["session_id"]]
    assert (record["end_reason"], record["memories_stored"], record["extensions"]) == ("deactivated", 2, 1)
