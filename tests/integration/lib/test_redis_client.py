"""The Redis client of `open_redis` packs commands with hiredis: what reaches Redis, and what
is refused, must be what redis-py's own packer sends and refuses (memanto_server/lib/redis_client.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio.connection import Connection
from redis.exceptions import DataError

from memanto_server.lib.redis_client import RedisClient, open_redis
from tests.helpers.backends import REDIS_URL

# Every kind of value the app sends, and the edges of their text forms.
VALUES: list[Any] = [
    "plain",
    "",
    "é✓ 日本 \u2028 \x00 end",
    0,
    -5,
    2**70,
    1.5,
    0.1,
    1 / 3,
    -0.0,
    1e20,
    float("inf"),
    b"\x00 raw \xc3\xa9",
    bytearray(b"a bytearray"),
    memoryview(b"a memoryview"),
    "x" * 20_000,  # past redis-py's chunking threshold
]


@pytest.fixture
async def client() -> AsyncIterator[RedisClient]:
    redis = open_redis(REDIS_URL, timeout=5, max_connections=10)
    try:
        yield redis
    finally:
        await redis.aclose()


def packed(connection: Connection, *args: Any) -> bytes:
    return b"".join(bytes(part) for part in connection.pack_command(*args))


@pytest.mark.parametrize(
    "args",
    [("EVALSHA", "f" * 40, 1, "k:{a}", "sess_x", 0, 0, ""), ("CONFIG GET", "x"), (b"CLIENT SETNAME", "n")],
)
async def test_commands_are_packed_as_redis_py_packs_them(client: RedisClient, args: tuple[Any, ...]) -> None:
    pool = client.connection_pool  # type: ignore[union-attr]
    connection = pool.connection_class(**pool.connection_kwargs)  # as the pool makes them (no I/O)
    assert type(connection).pack_command is not Connection.pack_command
    assert packed(connection, *args) == packed(Connection(), *args)
    for value in VALUES:
        assert packed(connection, "SET", "k", value) == packed(Connection(), "SET", "k", value)


async def test_every_kind_of_value_reaches_redis_as_it_was(client: RedisClient, redis_prefix: str) -> None:
    encoder = Connection().encoder
    for index, value in enumerate(VALUES):
        key = f"{redis_prefix}packed:{index}"
        await client.set(key, value)
        assert await client.get(key) == bytes(encoder.encode(value)).decode()


@pytest.mark.parametrize("value", [True, None, [1], {"a": 1}])
async def test_a_value_redis_has_no_form_for_is_refused_as_redis_py_refuses_it(client: RedisClient, value: Any) -> None:
    with pytest.raises(DataError, match="Invalid input of type"):
        await client.set("never-written", value)
