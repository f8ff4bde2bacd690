"""The session store on a real Redis: one key per agent, liveness by the Redis clock.

A session is live while its expiry is ahead of the Redis server's clock; after that its
state is kept for the retention window (for the expiry sweeper) but no script may treat
it as live, count on it, extend it or end it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from memanto_server.lib.redis_client import RedisClient
from memanto_server.lifespan import redis_from
from memanto_server.sessions.store import Extended, LiveState, Miss, Replaced, SessionStore, Snapshot
from memanto_server.settings import Settings
from tests.helpers.owners import unique_agent

RETAIN_MS = 60_000
HOUR_MS = 3_600_000


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


def now_ms() -> int:
    return int(time.time() * 1000)


async def start(store: SessionStore, owner: str, agent: str, session_id: str, lasts_ms: int) -> Replaced | None:
    created = now_ms()
    return await store.activate(
        owner,
        agent,
        session_id,
        created_ms=created,
        expires_ms=created + lasts_ms,
        max_expires_ms=created + 2 * HOUR_MS,
    )


async def test_one_key_per_agent_kept_for_the_retention_window_after_the_expiry(
    store: SessionStore, redis: RedisClient, settings: Settings
) -> None:
    owner, agent = str(uuid.uuid4()), unique_agent("store")
    await start(store, owner, agent, "sess_one", HOUR_MS)
    found = [key async for key in redis.scan_iter(match=f"{settings.redis_prefix}*{owner}:{agent}*")]
    assert found == [store.key(owner, agent)]
    state = (await store.peek(owner, agent)).state
    assert state is not None
    assert await redis.pexpiretime(found[0]) == state.expires_ms + RETAIN_MS

    extended = await store.extend(owner, agent, "sess_one", HOUR_MS)
    assert isinstance(extended, Extended)
    assert extended.state.expires_ms == state.expires_ms + HOUR_MS
    assert await redis.pexpiretime(found[0]) == extended.state.expires_ms + RETAIN_MS


async def test_a_session_past_its_expiry_is_kept_but_not_live(store: SessionStore) -> None:
    owner, agent = str(uuid.uuid4()), unique_agent("store")
    await start(store, owner, agent, "sess_short", 300)
    live = await store.touch(owner, agent, "sess_short", stored=2, retrieved=3)
    assert isinstance(live, LiveState)
    await asyncio.sleep(0.4)

    # Its state is kept, with its final counters, but nothing treats it as live any more.
    snapshot = await store.peek(owner, agent)
    assert snapshot.live_session_id is None
    assert snapshot.state is not None
    assert (snapshot.state.session_id, snapshot.state.stored, snapshot.state.retrieved) == ("sess_short", 2, 3)
    assert await store.touch(owner, agent, "sess_short", stored=1) is Miss.NONE_LIVE
    assert await store.extend(owner, agent, "sess_short", HOUR_MS) is Miss.NONE_LIVE
    assert await store.end(owner, agent, "sess_short") is Miss.NONE_LIVE
    assert await store.end(owner, agent) is Miss.NONE_LIVE
    # Not counted, not revived, not deleted: the sweeper still reads exactly what it ended with.
    assert await store.peek(owner, agent) == snapshot

    # The next activation reports it as run out, not superseded, with those counters.
    replaced = await start(store, owner, agent, "sess_next", HOUR_MS)
    assert replaced == Replaced("expired", snapshot.state)


async def test_a_superseded_session_is_none_live_once_its_successor_has_run_out(store: SessionStore) -> None:
    owner, agent = str(uuid.uuid4()), unique_agent("store")
    await start(store, owner, agent, "sess_first", HOUR_MS)
    replaced = await start(store, owner, agent, "sess_second", 300)
    assert replaced is not None
    assert (replaced.reason, replaced.state.session_id) == ("superseded", "sess_first")
    assert await store.touch(owner, agent, "sess_first") is Miss.SUPERSEDED
    assert await store.extend(owner, agent, "sess_first", HOUR_MS) is Miss.SUPERSEDED
    assert await store.end(owner, agent, "sess_first") is Miss.SUPERSEDED
    await asyncio.sleep(0.4)
    assert await store.touch(owner, agent, "sess_first") is Miss.NONE_LIVE
    assert await store.extend(owner, agent, "sess_first", HOUR_MS) is Miss.NONE_LIVE
    assert await store.end(owner, agent, "sess_first") is Miss.NONE_LIVE


async def test_ending_returns_the_final_state_and_forgets_the_session(store: SessionStore, redis: RedisClient) -> None:
    owner, agent = str(uuid.uuid4()), unique_agent("store")
    await start(store, owner, agent, "sess_ended", HOUR_MS)
    await store.touch(owner, agent, "sess_ended", stored=1)
    ended = await store.end(owner, agent, "sess_ended")
    assert isinstance(ended, LiveState)
    assert (ended.session_id, ended.stored, ended.retrieved, ended.extensions) == ("sess_ended", 1, 0, 0)
    assert await redis.exists(store.key(owner, agent)) == 0
    assert await store.peek(owner, agent) == Snapshot(None, None)
    assert await store.touch(owner, agent, "sess_ended") is Miss.NONE_LIVE
    assert await store.end(owner, agent) is Miss.NONE_LIVE
    assert await start(store, owner, agent, "sess_after", HOUR_MS) is None
