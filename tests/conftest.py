"""Test harness: real Postgres and Redis, a database and key prefix of this run's own.

Each run creates `memanto_test_<run>` (migrated with the real runner) and uses the
Redis prefix `memanto-test-<run>:`; both are removed at the end, so runs never disturb
each other or a developer's data. Tests isolate further by creating owners of their own.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import asyncpg
import msgspec
import pytest
import redis
from litestar.testing import AsyncTestClient

from app.auth.keys import display_prefix, generate_api_key, hash_api_key, new_key_id
from app.db import Database
from app.lifespan import open_pool
from app.main import create_app
from app.memories.repository import MemoryRepository
from app.migrations import migrate
from app.settings import Settings
from tests.helpers import API, RedisClusterProcesses, activate, private_redis_cluster, token_headers

PG_SERVER_URL = os.environ.get("MEMANTO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("MEMANTO_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
RUN_ID = secrets.token_hex(4)


class OwnerKey(msgspec.Struct, frozen=True):
    owner_id: str
    key_id: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


async def _drop_database(name: str) -> None:
    conn = await asyncpg.connect(f"{PG_SERVER_URL}/postgres")
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    name = f"memanto_test_{RUN_ID}"
    url = f"{PG_SERVER_URL}/{name}"
    asyncio.run(migrate(url))
    yield url
    asyncio.run(_drop_database(name))


@pytest.fixture(scope="session")
def redis_prefix() -> Iterator[str]:
    prefix = f"memanto-test-{RUN_ID}:"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    try:
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            client.delete(key)
    finally:
        client.close()


@pytest.fixture(scope="session")
def settings(database_url: str, redis_prefix: str) -> Settings:
    return Settings(
        database_url=database_url,
        redis_url=REDIS_URL,
        redis_prefix=redis_prefix,
        secret_key=secrets.token_urlsafe(48),
        db_pool_max=5,
    )


def settings_env(settings: Settings) -> dict[str, str]:
    """The MEMANTO_* environment that reproduces `settings` in a server process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMANTO_")}
    for name in settings.__struct_fields__:
        value = getattr(settings, name)
        if isinstance(value, tuple):
            value = ",".join(value)
        env[f"MEMANTO_{name.upper()}"] = str(value)
    return env


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[AsyncTestClient[Any]]:
    """The app on Litestar's test client; it opens its own pools in its own lifespan."""
    async with AsyncTestClient(app=create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
async def repository(settings: Settings) -> AsyncIterator[MemoryRepository]:
    """The memory repository on the app's own kind of pool (its planner settings included)."""
    pool = await open_pool(settings)
    try:
        yield MemoryRepository(Database(pool, 5))
    finally:
        await pool.close()


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection[Any]]:
    """A connection of the test's own, for setting up and for checking what was committed."""
    conn = await asyncpg.connect(database_url)
    try:
        yield conn
    finally:
        await conn.close()


async def create_owner_key(conn: asyncpg.Connection[Any], name: str = "test-owner") -> OwnerKey:
    owner_id = await conn.fetchval("INSERT INTO owners (name) VALUES ($1) RETURNING owner_id::text", name)
    key, key_id = generate_api_key(), new_key_id()
    await conn.execute(
        "INSERT INTO api_keys (key_id, owner_id, name, key_hash, prefix) VALUES ($1, $2, $3, $4, $5)",
        key_id,
        owner_id,
        name,
        hash_api_key(key),
        display_prefix(key),
    )
    return OwnerKey(owner_id=owner_id, key_id=key_id, key=key)


@pytest.fixture
def make_owner(db: asyncpg.Connection[Any]) -> Callable[..., Awaitable[OwnerKey]]:
    async def make(name: str = "test-owner") -> OwnerKey:
        return await create_owner_key(db, name)

    return make


@pytest.fixture
async def owner(make_owner: Callable[..., Awaitable[OwnerKey]]) -> OwnerKey:
    return await make_owner()


def unique_agent(prefix: str = "agent") -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


class Live:
    """One activated agent: its id, its session and the headers its memory calls send."""

    def __init__(self, owner: OwnerKey, agent_id: str, session: dict[str, Any]) -> None:
        self.owner = owner
        self.agent_id = agent_id
        self.session = session
        self.session_id: str = session["session_id"]
        self.token: str = session["session_token"]
        self.headers = token_headers(self.token)

    def url(self, route: str) -> str:
        return f"{API}/agents/{self.agent_id}/{route}"

    @property
    def remember_url(self) -> str:
        return self.url("remember")

    @property
    def recall_url(self) -> str:
        return self.url("recall")


async def start(client: Any, owner: OwnerKey, agent_id: str | None = None) -> Live:
    """Activate `agent_id` (a new agent by default) with the owner's key."""
    agent_id = agent_id or unique_agent()
    return Live(owner, agent_id, await activate(client, owner.key, agent_id))


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterProcesses]:
    """A real 3-master Redis Cluster of this run's own, started on first use (a few seconds)."""
    with private_redis_cluster() as cluster:
        yield cluster
