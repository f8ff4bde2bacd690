"""The rate limiter's window (memanto_server/ops/lua/ratelimit.lua) against the real Redis, without HTTP.

Windows of a second or two keep the waits short; the script's clock is Redis's own, so
the waits below are margins around what the script said (`reset_after`), not guesses.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from memanto_server.lib.redis_client import storage_redis_url
from memanto_server.lifespan import redis_from
from memanto_server.ops.ratelimit import (
    BUCKETS_PER_WINDOW,
    BYPASS_SECONDS,
    Decision,
    OwnerRateLimiter,
    Rate,
)
from memanto_server.settings import Settings
from tests.helpers.backends import REDIS_URL

MARGIN = 0.1  # seconds past the promised reset: the round trips, and the spread of one batch of requests


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def key_prefix(settings: Settings) -> str:
    return settings.redis_prefix


@pytest.fixture
def owner_id() -> str:
    return f"owner-{secrets.token_hex(6)}"


def limiter(redis: Redis, key_prefix: str, rate: Rate) -> OwnerRateLimiter:
    return OwnerRateLimiter(rate, redis, key_prefix, timeout=2.0)


async def hit(limiter: OwnerRateLimiter, owner_id: str) -> Decision:
    decision = await limiter.hit(owner_id)
    assert decision is not None, "the limiter's Redis did not answer"
    return decision


async def test_exactly_the_limit_is_let_through_with_remaining_counting_down(
    redis: Redis, key_prefix: str, owner_id: str
) -> None:
    minute = limiter(redis, key_prefix, Rate(5, 60))
    for remaining in (4, 3, 2, 1, 0):
        decision = await hit(minute, owner_id)
        assert (decision.allowed, decision.limit, decision.remaining) == (True, 5, remaining)
        assert 59 < decision.reset_after <= 60
        assert decision.headers() == {
            "RateLimit-Limit": "5",
            "RateLimit-Remaining": str(remaining),
            "RateLimit-Reset": "60",
        }
    refused = await hit(minute, owner_id)
    assert (refused.allowed, refused.remaining) == (False, 0)
    assert 0 < refused.reset_after <= 60
    assert refused.reset_seconds <= 60


async def test_a_refused_request_is_not_counted_and_gets_through_when_its_window_frees(
    redis: Redis, key_prefix: str, owner_id: str
) -> None:
    second = limiter(redis, key_prefix, Rate(3, 1))
    for _ in range(3):
        assert (await hit(second, owner_id)).allowed
    held = await redis.hgetall(second.key(owner_id))

    refusals = [await hit(second, owner_id) for _ in range(20)]  # a client hammering while refused
    assert not any(decision.allowed for decision in refusals)
    assert await redis.hgetall(second.key(owner_id)) == held, "a refused request changed the window"
    resets = [decision.reset_after for decision in refusals]
    assert resets == sorted(resets, reverse=True), "the reset drew further away while refused"
    assert refusals[-1].reset_seconds == 1

    await asyncio.sleep(refusals[-1].reset_after + MARGIN)
    recovered = [await hit(second, owner_id) for _ in range(4)]
    assert [decision.allowed for decision in recovered] == [True, True, True, False]
    assert [decision.remaining for decision in recovered] == [2, 1, 0, 0]


async def test_the_window_slides_requests_leave_it_one_batch_at_a_time(
    redis: Redis, key_prefix: str, owner_id: str
) -> None:
    two_seconds = limiter(redis, key_prefix, Rate(4, 2))
    assert [(await hit(two_seconds, owner_id)).remaining for _ in range(2)] == [3, 2]
    await asyncio.sleep(1.0)
    assert [(await hit(two_seconds, owner_id)).remaining for _ in range(2)] == [1, 0]

    refused = await hit(two_seconds, owner_id)
    assert not refused.allowed
    assert 0 < refused.reset_after <= 1.0 + MARGIN  # the first two leave the window first

    await asyncio.sleep(refused.reset_after + MARGIN)
    # The first two have left; the last two are still in the window (for about one more second).
    after = [await hit(two_seconds, owner_id) for _ in range(3)]
    assert [(decision.allowed, decision.remaining) for decision in after] == [(True, 1), (True, 0), (False, 0)]
    assert after[-1].reset_after <= 1.0


async def test_two_limiters_share_one_budget(key_prefix: str, owner_id: str) -> None:
    """Two app instances: separate clients, separate script objects, the same key."""
    first_client = Redis.from_url(REDIS_URL, decode_responses=True)
    second_client = Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        instances = [limiter(client, key_prefix, Rate(4, 60)) for client in (first_client, second_client)]
        decisions = [await hit(instances[index % 2], owner_id) for index in range(6)]
        assert [(decision.allowed, decision.remaining) for decision in decisions] == [
            (True, 3),
            (True, 2),
            (True, 1),
            (True, 0),
            (False, 0),
            (False, 0),
        ]
        other = await hit(instances[1], f"{owner_id}-other")  # another owner, its own budget
        assert (other.allowed, other.remaining) == (True, 3)
    finally:
        await first_client.aclose()
        await second_client.aclose()


async def test_memory_per_owner_stays_bounded_whatever_the_limit(redis: Redis, key_prefix: str, owner_id: str) -> None:
    busy = limiter(redis, key_prefix, Rate(100_000, 1))
    key = busy.key(owner_id)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 1.5  # longer than the window: old buckets must be dropped as it slides
    hits = 0
    while loop.time() < deadline:
        await asyncio.gather(*(hit(busy, owner_id) for _ in range(20)))
        hits += 20
        fields = await redis.hgetall(key)
        buckets = {name: value for name, value in fields.items() if name not in ("n", "o")}
        assert len(buckets) <= BUCKETS_PER_WINDOW + 2, len(buckets)
        # The total is the sum of the buckets, and the oldest bucket is the one named.
        assert int(fields["n"]) == sum(int(value.split(":")[0]) for value in buckets.values())
        assert fields["o"] == min(buckets, key=int)
    assert await redis.object("encoding", key) == "listpack"  # the compact encoding of a small hash
    assert 0 < await redis.pttl(key) <= 1000
    in_window = int(await redis.hget(key, "n") or 0)
    assert 0 < in_window < hits


async def test_the_key_has_the_prefix_the_window_and_a_hash_tag_of_its_own(
    redis: Redis, key_prefix: str, owner_id: str
) -> None:
    minute = limiter(redis, key_prefix, Rate(10, 60))
    await hit(minute, owner_id)
    key = minute.key(owner_id)
    assert key == f"{key_prefix}ratelimit:{{{owner_id}}}:60s"
    assert [found async for found in redis.scan_iter(match=f"{key_prefix}ratelimit:*{owner_id}*")] == [key]
    assert 59_000 < await redis.pttl(key) <= 60_000


async def test_a_storage_error_lets_requests_through_and_bypasses_the_limiter_for_a_while(
    redis: Redis, key_prefix: str, owner_id: str
) -> None:
    minute = limiter(redis, key_prefix, Rate(1, 60))
    await redis.set(minute.key(owner_id), "not a hash")  # WRONGTYPE inside the script
    assert await minute.hit(owner_id) is None
    await redis.delete(minute.key(owner_id))
    assert await minute.hit(owner_id) is None, f"tried again within {BYPASS_SECONDS} s"


@pytest.mark.slow
async def test_on_a_redis_cluster_each_owner_has_a_slot_of_its_own(
    settings: Settings, redis_cluster: Any, owner_id: str
) -> None:
    """The limiter's own storage on a cluster (`MEMANTO_RATE_LIMIT_STORAGE_URL=redis+cluster://…`)."""
    cluster = redis_from(settings, storage_redis_url(redis_cluster.url))
    try:
        assert isinstance(cluster, RedisCluster)
        on_cluster = OwnerRateLimiter(Rate(2, 60), cluster, settings.redis_prefix, timeout=2.0)
        decisions = [await hit(on_cluster, owner_id) for _ in range(3)]
        assert [(decision.allowed, decision.remaining) for decision in decisions] == [(True, 1), (True, 0), (False, 0)]
        key = on_cluster.key(owner_id)
        assert await cluster.cluster_keyslot(key) == await cluster.cluster_keyslot(f"{{{owner_id}}}")
        assert await cluster.exists(key) == 1
    finally:
        await cluster.aclose()
