"""The session store on a real Redis: one key per agent, liveness by the Redis clock.

A session is live while its expiry is ahead of the Redis server's clock; after that its
state is kept for the retention window (for the expiry sweeper) but no script may treat
it as live, count on it, extend it or end it. A deactivated session is kept as a
tombstone until the same TTL: no script treats it as live, and its end can be read again.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from memanto_server.lib.redis_client import RedisClient
from memanto_server.lifespan import redis_from
from memanto_server.sessions.store import Activated, Ended, EndRecord, Extended, LiveState, Miss, SessionStore, Snapshot
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


async def start(store: SessionStore, owner: str, agent: str, session_id: str, lasts_ms: int) -> Activated:
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
    assert await store.end(owner, agent, "sess_short", now_ms()) is Miss.NONE_LIVE
    assert await store.end(owner, agent, None, now_ms()) is Miss.NONE_LIVE
    # Not counted, not revived, not deleted: the sweeper still reads exactly what it ended with.
    assert await store.peek(owner, agent) == snapshot

    # The next activation reports it as run out, not superseded, with those counters.
    activated = await start(store, owner, agent, "sess_next", HOUR_MS)
    assert activated == Activated(False, [EndRecord("expired", snapshot.state, snapshot.state.expires_ms)])


async def test_a_superseded_session_is_none_live_once_its_successor_has_run_out(store: SessionStore) -> None:
    owner, agent = str(uuid.uuid4()), unique_agent("store")
    await start(store, owner, agent, "sess_first", HOUR_MS)
    activated = await start(store, owner, agent, "sess_second", 300)
    assert [(e.reason, e.state.session_id) for e in activated.ended] == [("superseded", "sess_first")]
    assert activated.superseded == "sess_first"
    assert await store.touch(owner, agent, "sess_first") is Miss.SUPERSEDED
    assert await store.extend(owner, agent, "sess_first", HOUR_MS) is Miss.SUPERSEDED
    assert await store.end(owner, agent, "sess_first", now_ms()) is Miss.SUPERSEDED
    await asyncio.sleep(0.4)
    assert await store.touch(owner, agent, "sess_first") is Miss.NONE_LIVE
    assert await store.extend(owner, agent, "sess_first", HOUR_MS) is Miss.NONE_LIVE
    assert await store.end(owner, agent, "sess_first", now_ms()) is Miss.NONE_LIVE


async def test_ending_returns_the_final_state_and_keeps_a_tombstone(store: SessionStore, redis: RedisClient) -> None:
    owner, agent = str(uuid.uuid4()), unique_agent("store")
    first = await start(store, owner, agent, "sess_ended", HOUR_MS)
    assert first == Activated(False, [])
    await store.touch(owner, agent, "sess_ended", stored=1)
    at = now_ms()
    ended = await store.end(owner, agent, "sess_ended", at)
    assert isinstance(ended, Ended)
    assert not ended.before
    assert ended.predecessors == []
    state = ended.record.state
    assert (ended.record.reason, ended.record.ended_ms) == ("deactivated", at)
    assert (state.session_id, state.stored, state.retrieved, state.extensions) == ("sess_ended", 1, 0, 0)

    # Not live for anything; its end can be read again, as first recorded, until its TTL.
    assert await store.peek(owner, agent) == Snapshot(None, state, at)
    assert await store.touch(owner, agent, "sess_ended") is Miss.ENDED
    assert await store.touch(owner, agent, "sess_ended", stored=1) is Miss.ENDED
    assert await store.extend(owner, agent, "sess_ended", HOUR_MS) is Miss.ENDED
    assert await store.touch(owner, agent, "sess_other") is Miss.NONE_LIVE
    again = await store.end(owner, agent, "sess_ended", at + 5000)
    assert again == Ended(True, ended.record, [])
    assert await store.end(owner, agent, None, at + 5000) == Ended(True, ended.record, [])
    assert await store.end(owner, agent, "sess_other", at + 5000) is Miss.NONE_LIVE
    assert await redis.pexpiretime(store.key(owner, agent)) == state.expires_ms + RETAIN_MS

    # The next activation reports it as deactivated (recording it again is harmless).
    after = await start(store, owner, agent, "sess_after", HOUR_MS)
    assert after == Activated(False, [ended.record])
