"""Scripts of concurrent requests sent in one pipeline (memanto_server/lib/redis_scripts.py), on real Redis.

Each caller must get exactly its own reply or its own error, whatever else shares its
pipeline; the whole batch must fail as a lone call would when Redis does, and recover
with it; and calls made together must share round trips (seen from Redis: the client
opens one connection for a burst, not one per call). A pipeline whose reply a TCP proxy
cuts (after Redis ran it) is delivered again, and a call that changes state, carrying its
delivery id, can tell and apply once; lost twice, it fails saying which call may have run.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from memanto_server.errors import OUTAGE_ERRORS
from memanto_server.lib.redis_client import RedisClient, open_redis
from memanto_server.lib.redis_scripts import BatchedScript, OutcomeUnknown, RedisBusy
from memanto_server.lifespan import redis_from
from memanto_server.settings import Settings
from tests.helpers.processes import RedisProcess, private_redis
from tests.helpers.proxy import TcpProxy, tcp_proxy

# Counts calls per key and echoes what it was given; fails on request.
ECHO = """
if ARGV[1] == 'fail' then
  return redis.error_reply('asked to fail')
end
return {KEYS[1], ARGV[1], redis.call('INCR', KEYS[1])}
"""
CALLS = 200


@pytest.fixture
def server() -> Iterator[RedisProcess]:
    with private_redis() as process:
        yield process


@pytest.fixture
async def client(server: RedisProcess, settings: Settings) -> AsyncIterator[RedisClient]:
    redis = open_redis(server.url, timeout=settings.redis_timeout, max_connections=500)
    try:
        yield redis
    finally:
        await redis.aclose()


async def connected_clients(url: str) -> int:
    admin = Redis.from_url(url)
    try:
        return int((await admin.info("clients"))["connected_clients"]) - 1  # not this one
    finally:
        await admin.aclose()


async def test_concurrent_calls_share_round_trips_and_each_gets_its_own_reply(
    client: RedisClient, server: RedisProcess
) -> None:
    script = BatchedScript(client, ECHO)
    keys = [f"k{i % 20}" for i in range(CALLS)]
    replies = await asyncio.gather(*(script(keys=[key], args=[f"arg-{i}"]) for i, key in enumerate(keys)))

    assert [reply[:2] for reply in replies] == [[key, f"arg-{i}"] for i, key in enumerate(keys)]
    # Redis ran them in the order they were made: each key's counts rise in call order.
    for key in set(keys):
        assert [reply[2] for reply in replies if reply[0] == key] == list(range(1, keys.count(key) + 1))
    # 200 calls at once over one connection: one pipeline, not 200 checkouts of the pool.
    assert await connected_clients(server.url) == 1


async def test_a_failing_call_fails_alone(client: RedisClient) -> None:
    script = BatchedScript(client, ECHO)
    args = ["fail" if i % 7 == 3 else f"ok-{i}" for i in range(50)]
    outcomes = await asyncio.gather(*(script(keys=["shared"], args=[arg]) for arg in args), return_exceptions=True)

    for arg, outcome in zip(args, outcomes, strict=True):
        if arg == "fail":
            assert isinstance(outcome, ResponseError)
            assert "asked to fail" in str(outcome)
        else:
            assert outcome[1] == arg
    assert int(await client.get("shared")) == sum(1 for arg in args if arg != "fail")


async def test_a_script_flushed_from_redis_is_loaded_again(client: RedisClient) -> None:
    script = BatchedScript(client, ECHO)
    assert (await script(keys=["once"], args=["first"]))[2] == 1
    await client.script_flush()
    replies = await asyncio.gather(*(script(keys=["once"], args=[f"again-{i}"]) for i in range(10)))
    assert sorted(reply[2] for reply in replies) == list(range(2, 12))
    assert await client.script_exists(script.sha) == [True]


async def test_a_cancelled_caller_leaves_the_others_their_replies(client: RedisClient) -> None:
    script = BatchedScript(client, ECHO)
    calls = [asyncio.ensure_future(script(keys=["c"], args=[f"call-{i}"])) for i in range(10)]
    await asyncio.sleep(0)  # every call is queued for the next turn of the loop
    calls[4].cancel()
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(outcomes[4], asyncio.CancelledError)
    assert [o[1] for i, o in enumerate(outcomes) if i != 4] == [f"call-{i}" for i in range(10) if i != 4]


async def test_a_redis_outage_fails_every_call_and_the_next_calls_recover(
    client: RedisClient, server: RedisProcess
) -> None:
    script = BatchedScript(client, ECHO)
    await asyncio.gather(*(script(keys=["up"], args=["warm"]) for _ in range(5)))  # pool connections open
    server.stop()
    outcomes = await asyncio.gather(*(script(keys=["down"], args=[str(i)]) for i in range(20)), return_exceptions=True)
    assert all(isinstance(outcome, OUTAGE_ERRORS) for outcome in outcomes), outcomes
    assert any(isinstance(outcome, RedisConnectionError) for outcome in outcomes)

    server.start()
    replies = await asyncio.gather(*(script(keys=["back"], args=[str(i)]) for i in range(20)))
    assert sorted(reply[2] for reply in replies) == list(range(1, 21))


async def test_calls_batched_across_the_nodes_of_a_cluster(settings: Settings, redis_cluster: object) -> None:
    redis = redis_from(settings, redis_cluster.url)  # type: ignore[attr-defined]
    try:
        script = BatchedScript(redis, ECHO)
        run = secrets.token_hex(4)
        keys = [f"batch-{run}:{{tag-{i % 30}}}" for i in range(120)]  # 30 hash tags over 3 masters
        replies = await asyncio.gather(*(script(keys=[key], args=[str(i)]) for i, key in enumerate(keys)))
        assert [reply[:2] for reply in replies] == [[key, str(i)] for i, key in enumerate(keys)]
        for key in set(keys):
            assert int(await redis.get(key)) == keys.count(key)
        await redis.script_flush()  # every primary forgets the script
        replies = await asyncio.gather(*(script(keys=[key], args=["again"]) for key in keys))
        assert sorted(reply[2] for reply in replies if reply[0] == keys[0]) == [5, 6, 7, 8]
        for key in set(keys):
            await redis.delete(key)
    finally:
        await redis.aclose()


# Lost replies: a pipeline delivered again, calls that change state applied once.

# Counts a call once per delivery id (the last argument, appended by `call_once`).
COUNT_ONCE = """
local delivery = ARGV[#ARGV]
if redis.call('SADD', KEYS[1] .. ':seen', delivery) == 0 then
  return {'again', delivery, tonumber(redis.call('GET', KEYS[1]))}
end
return {'new', delivery, redis.call('INCR', KEYS[1])}
"""


@pytest.fixture
def proxy(server: RedisProcess) -> Iterator[TcpProxy]:
    with tcp_proxy("127.0.0.1", server.port) as running:
        yield running


@pytest.fixture
async def proxied(proxy: TcpProxy, settings: Settings) -> AsyncIterator[RedisClient]:
    redis = open_redis(f"redis://127.0.0.1:{proxy.port}/0", timeout=settings.redis_timeout, max_connections=50)
    try:
        yield redis
    finally:
        await redis.aclose()


async def test_calls_once_carry_their_pipeline_and_position(client: RedisClient) -> None:
    script = BatchedScript(client, COUNT_ONCE)
    results = await asyncio.gather(*(script.call_once(keys=["ids"]) for _ in range(10)))
    deliveries = [delivery for _, delivery in results]
    assert [reply[1] for reply, _ in results] == deliveries
    assert len({d[:6] for d in deliveries}) == 1  # one pipeline
    assert [d[6:] for d in deliveries] == [f"{i:03d}" for i in range(10)]
    again = await script.call_once(keys=["ids"])
    assert again[1][:6] != deliveries[0][:6]


async def test_a_cut_pipeline_is_delivered_again_and_each_call_applies_once(
    proxied: RedisClient, proxy: TcpProxy, server: RedisProcess
) -> None:
    once, echo = BatchedScript(proxied, COUNT_ONCE), BatchedScript(proxied, ECHO)
    await once.call_once(keys=["cut"])  # loaded: the cut reply is the script's, not NOSCRIPT's
    await echo(keys=["plain"], args=["warm"])
    proxy.cut_after_reply(once.sha.encode())
    outcomes = await asyncio.gather(
        *(once.call_once(keys=["cut"]) for _ in range(30)), *(echo(keys=["plain"], args=[str(i)]) for i in range(5))
    )
    assert proxy.cuts == 1
    counted = [reply for reply, _ in outcomes[:30]]
    assert sorted(reply[2] for reply in counted if reply[0] == "new") == list(
        range(2, 2 + sum(r[0] == "new" for r in counted))
    )
    assert any(reply[0] == "again" for reply in counted)  # answered by the second delivery
    admin = Redis(port=server.port)
    try:
        assert int(await admin.get("cut")) == 31  # 1 + 30: none applied twice
    finally:
        await admin.aclose()
    assert [reply[1] for reply in outcomes[30:]] == [str(i) for i in range(5)]


async def test_a_pipeline_whose_replies_are_lost_twice_fails_with_the_ids_of_its_calls(
    proxied: RedisClient, proxy: TcpProxy
) -> None:
    once, echo = BatchedScript(proxied, COUNT_ONCE), BatchedScript(proxied, ECHO)
    await once.call_once(keys=["twice"])
    await echo(keys=["plain"], args=["warm"])
    proxy.cut_after_reply(once.sha.encode(), times=2)
    proxy.cut_after_reply(echo.sha.encode(), times=2)
    outcomes = await asyncio.gather(
        once.call_once(keys=["twice"]), echo(keys=["plain"], args=["x"]), return_exceptions=True
    )
    unknown, plain = outcomes
    assert isinstance(unknown, OutcomeUnknown)
    assert len(unknown.delivery) == 9
    assert isinstance(plain, RedisConnectionError)
    assert not isinstance(plain, OutcomeUnknown)
    assert (await once.call_once(keys=["twice"]))[0][2] == 3  # the lost call did run, once


async def test_a_busy_redis_refuses_and_runs_nothing(client: RedisClient, server: RedisProcess) -> None:
    once = BatchedScript(client, COUNT_ONCE)
    await once.call_once(keys=["busy"])
    blocker = Redis(port=server.port, socket_timeout=10)
    await blocker.config_set("busy-reply-threshold", 100)
    stuck = asyncio.ensure_future(blocker.eval("while true do end", 0))
    await asyncio.sleep(0.3)  # past the threshold: Redis answers BUSY
    try:
        with pytest.raises(RedisBusy):
            await once.call_once(keys=["busy"])
        assert isinstance(RedisBusy("x"), OUTAGE_ERRORS)
    finally:
        admin = Redis(port=server.port)
        await admin.script_kill()
        await admin.aclose()
        with pytest.raises(ResponseError):
            await stuck
        await blocker.aclose()
    assert (await once.call_once(keys=["busy"]))[0][2] == 2
