"""Every state-changing session script has the effect of one delivery, however often it is delivered.

First each script on its own, on the run's Redis, given the same call (same delivery id)
twice, as redis-py or the app would send it after a lost reply. Then the store as the app
uses it, through a TCP proxy that cuts the connection right after a private Redis has
answered (the proxy forwards the call, then drops the connection instead of the reply):
the call is delivered again and answered with its first outcome; cut twice, the call
fails (`OutcomeUnknown`, a 503 upstream) and is taken back before the next call on the
agent, so that a retry counts once.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from memanto_server.lib.redis_client import RedisClient, open_redis
from memanto_server.lib.redis_scripts import OutcomeUnknown
from memanto_server.lifespan import redis_from
from memanto_server.sessions.store import Activated, Ended, EndRecord, Extended, LiveState, SessionStore, script_source
from memanto_server.settings import Settings
from tests.helpers.owners import unique_agent
from tests.helpers.processes import RedisProcess, private_redis
from tests.helpers.proxy import TcpProxy, tcp_proxy

RETAIN_MS = 60_000
HOUR_MS = 3_600_000
SCRIPTS = ("activate.lua", "touch.lua", "extend.lua", "end.lua", "peek.lua", "take_back.lua")


def now_ms() -> int:
    return int(time.time() * 1000)


def sha(name: str) -> bytes:
    return hashlib.sha1(script_source(name).encode()).hexdigest().encode()  # noqa: S324 - Redis's script id


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[RedisClient]:
    client = redis_from(settings)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def store(redis: RedisClient, settings: Settings) -> SessionStore:
    return SessionStore(redis, settings.redis_prefix, RETAIN_MS)


class Scripts:
    """The store's scripts, called directly with a delivery id of the test's choosing."""

    def __init__(self, redis: RedisClient) -> None:
        self._redis = redis

    async def __call__(self, name: str, key: str, *args: Any) -> list[str]:
        """The reply, every value as text (a count may come back as a number or as its text)."""
        reply = await self._redis.register_script(script_source(name))(keys=[key], args=list(args))
        return [str(value) for value in reply]


async def start(store: SessionStore, owner: str, agent: str, session_id: str) -> Activated:
    created = now_ms()
    return await store.activate(
        owner, agent, session_id, created_ms=created, expires_ms=created + HOUR_MS, max_expires_ms=created + 9 * HOUR_MS
    )


async def test_each_script_delivered_twice_applies_once(store: SessionStore, redis: RedisClient) -> None:
    scripts = Scripts(redis)
    owner, agent = str(uuid.uuid4()), unique_agent("once")
    key = store.key(owner, agent)
    await start(store, owner, agent, "sess_first")

    # A count: the second delivery answers the same state without counting again.
    first = await scripts("touch.lua", key, "sess_first", 1, 2, "pipeAA000")
    again = await scripts("touch.lua", key, "sess_first", 1, 2, "pipeAA000")
    assert first == again
    assert (int(first[3]), int(first[4])) == (1, 2)
    other = await scripts("touch.lua", key, "sess_first", 1, 0, "pipeAA001")  # the next call of that pipeline
    assert int(other[3]) == 2
    assert int((await scripts("touch.lua", key, "sess_first", 1, 0, "pipeAA000"))[3]) == 2  # ran before it

    # An extension: added once, and answered with the same previous and new expiry.
    before = await store.peek(owner, agent)
    extended = await scripts("extend.lua", key, "sess_first", HOUR_MS, RETAIN_MS, "pipeBB000")
    assert await scripts("extend.lua", key, "sess_first", HOUR_MS, RETAIN_MS, "pipeBB000") == extended
    after = await store.peek(owner, agent)
    assert before.state is not None
    assert after.state is not None
    assert after.state.expires_ms == before.state.expires_ms + HOUR_MS
    assert after.state.extensions == 1

    # An activation: the second delivery supersedes nothing (not itself), and answers
    # the session the first one ended, for the history.
    created = now_ms()
    args = ("sess_second", created, created + HOUR_MS, created + 2 * HOUR_MS, RETAIN_MS, "pipeCC000")
    activated = await scripts("activate.lua", key, *args)
    assert activated[0] == "new"
    assert activated[1:3] == ["superseded", "sess_first"]
    redelivered = await scripts("activate.lua", key, *args)
    assert redelivered == ["again", *activated[1:]]
    live = await store.touch(owner, agent, "sess_second")
    assert isinstance(live, LiveState)
    assert (live.session_id, live.stored) == ("sess_second", 0)

    # A deactivation: the second delivery finds the tombstone and answers the same end.
    ended = await scripts("end.lua", key, "sess_second", created + 1000)
    assert ended[0] == "1"
    assert await scripts("end.lua", key, "sess_second", created + 9000) == ["2", *ended[1:]]


async def test_a_take_back_undoes_once_and_stops_a_late_delivery(store: SessionStore, redis: RedisClient) -> None:
    scripts = Scripts(redis)
    owner, agent = str(uuid.uuid4()), unique_agent("take")
    key = store.key(owner, agent)
    await start(store, owner, agent, "sess_t")
    counted = await store.touch(owner, agent, "sess_t", stored=3)
    assert isinstance(counted, LiveState)
    assert counted.delivery

    # A known count taken back (its memory was not stored), delivered twice: once.
    taken = await store.take_back(owner, agent, counted, stored=3)
    assert taken.stored == 0
    assert (await scripts("take_back.lua", key, counted.delivery, "1", "sess_t", 3, 0, 0, RETAIN_MS))[3] == "0"

    # A call whose outcome was unknown, taken back before its first delivery reaches Redis:
    # that late delivery does nothing. Taken back after it ran: undone.
    await scripts("take_back.lua", key, "lateXX000", "0", "sess_t", 1, 0, 0, RETAIN_MS)
    assert int((await scripts("touch.lua", key, "sess_t", 1, 0, "lateXX000"))[3]) == 0
    await scripts("touch.lua", key, "sess_t", 1, 0, "lateYY000")
    assert int((await scripts("take_back.lua", key, "lateYY000", "0", "sess_t", 1, 0, 0, RETAIN_MS))[3]) == 0
    extended = await store.extend(owner, agent, "sess_t", HOUR_MS)
    assert isinstance(extended, Extended)
    reply = await scripts("take_back.lua", key, "lateZZ000", "0", "sess_t", 0, 0, HOUR_MS, RETAIN_MS)
    assert int(reply[2]) == extended.state.expires_ms  # lateZ never ran: nothing to undo
    state = (await store.peek(owner, agent)).state
    assert state is not None
    assert (state.stored, state.extensions) == (0, 1)


async def test_the_delivery_ids_kept_stay_small(store: SessionStore, redis: RedisClient) -> None:
    owner, agent = str(uuid.uuid4()), unique_agent("ring")
    key = store.key(owner, agent)
    await start(store, owner, agent, "sess_old")
    await start(store, owner, agent, "sess_ring")  # carries the session it replaced until first used
    assert await redis.hexists(key, "p")
    assert await redis.object("encoding", key) == "listpack"
    for _ in range(12):
        await asyncio.gather(*(store.touch(owner, agent, "sess_ring", stored=1) for _ in range(5)))
        await store.extend(owner, agent, "sess_ring", 1000)
    state = (await store.peek(owner, agent)).state
    assert state is not None
    assert (state.stored, state.extensions) == (60, 12)
    assert not await redis.hexists(key, "p")  # dropped at first use
    assert len(await redis.hget(key, "k")) <= 63
    assert await redis.object("encoding", key) == "listpack"


# Through a proxy that loses replies.


@pytest.fixture
def own_redis() -> Iterator[RedisProcess]:
    with private_redis() as server:
        yield server


@pytest.fixture
async def proxied(own_redis: RedisProcess) -> AsyncIterator[tuple[TcpProxy, SessionStore]]:
    with tcp_proxy("127.0.0.1", own_redis.port) as proxy:
        client = open_redis(f"redis://127.0.0.1:{proxy.port}/0", timeout=2, max_connections=50)
        for name in SCRIPTS:  # loaded: a cut reply is then a script's, never a NOSCRIPT error's
            await client.script_load(script_source(name))
        store = SessionStore(client, "lost:", RETAIN_MS)
        try:
            yield proxy, store
        finally:
            await store.close()
            await client.aclose()


async def test_a_lost_reply_is_answered_by_the_second_delivery(proxied: tuple[TcpProxy, SessionStore]) -> None:
    proxy, store = proxied
    owner, agent = str(uuid.uuid4()), unique_agent("cut")
    await start(store, owner, agent, "sess_a")
    proxy.cut_after_reply(sha("touch.lua"))
    counted = await store.touch(owner, agent, "sess_a", stored=1, retrieved=4)
    assert isinstance(counted, LiveState)
    assert (counted.stored, counted.retrieved) == (1, 4)

    proxy.cut_after_reply(sha("extend.lua"))
    extended = await store.extend(owner, agent, "sess_a", HOUR_MS)
    assert isinstance(extended, Extended)
    assert extended.state.expires_ms == extended.previous_expires_ms + HOUR_MS

    proxy.cut_after_reply(sha("activate.lua"))
    activated = await start(store, owner, agent, "sess_b")
    assert activated.again  # answered by the second delivery, with what the first one ended
    assert activated.ended == [EndRecord("superseded", extended.state, activated.ended[0].ended_ms)]

    proxy.cut_after_reply(sha("end.lua"))
    ended = await store.end(owner, agent, "sess_b", now_ms())
    assert isinstance(ended, Ended)
    # The second delivery found the tombstone the first one left, with the same end: the
    # service records it (exactly once) and answers as if the first reply had come.
    assert isinstance(ended, Ended)
    assert ended.before
    assert ended.record.state.session_id == "sess_b"
    assert proxy.cuts == 4
    assert proxy.armed() == 0
    snapshot = await store.peek(owner, agent)
    assert snapshot.state is not None
    assert snapshot.ended_ms is not None
    assert snapshot.state.session_id == "sess_b"


async def test_concurrent_counts_in_one_cut_pipeline_count_once_each(proxied: tuple[TcpProxy, SessionStore]) -> None:
    proxy, store = proxied
    owner, agent = str(uuid.uuid4()), unique_agent("burst")
    await start(store, owner, agent, "sess_burst")
    proxy.cut_after_reply(sha("touch.lua"))
    results = await asyncio.gather(*(store.touch(owner, agent, "sess_burst", stored=1) for _ in range(40)))
    assert all(isinstance(r, LiveState) for r in results)
    assert proxy.cuts == 1
    state = (await store.peek(owner, agent)).state
    assert state is not None
    assert state.stored == 40
    assert sorted(r.stored for r in results if isinstance(r, LiveState))[-1] == 40


async def test_replies_lost_twice_fail_and_are_taken_back_before_the_retry(
    proxied: tuple[TcpProxy, SessionStore],
) -> None:
    proxy, store = proxied
    owner, agent = str(uuid.uuid4()), unique_agent("twice")
    await start(store, owner, agent, "sess_c")
    before = (await store.peek(owner, agent)).state
    assert before is not None

    proxy.cut_after_reply(sha("touch.lua"), times=2)
    with pytest.raises(OutcomeUnknown):
        await store.touch(owner, agent, "sess_c", stored=1)
    proxy.cut_after_reply(sha("extend.lua"), times=2)
    with pytest.raises(OutcomeUnknown):
        await store.extend(owner, agent, "sess_c", HOUR_MS)
    assert proxy.cuts == 4
    # Both ran (twice delivered, once applied); Redis answers again, so both are taken back
    # at once (by the store's background task, or by the next call on the agent) ...
    deadline = time.monotonic() + 5
    while (await store.peek(owner, agent)).state != before:
        assert time.monotonic() < deadline, await store.peek(owner, agent)
        await asyncio.sleep(0.02)

    # ... and the client's retry counts once.
    retried = await store.touch(owner, agent, "sess_c", stored=1)
    assert isinstance(retried, LiveState)
    assert retried.stored == 1
    again = await store.extend(owner, agent, "sess_c", HOUR_MS)
    assert isinstance(again, Extended)
    assert again.state.expires_ms == before.expires_ms + HOUR_MS
    assert again.state.extensions == 1
