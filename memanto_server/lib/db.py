"""A thin face on the asyncpg pool: every call waits at most `acquire_timeout` for a
connection (then raises TimeoutError, answered as 503), never forever.

The one-statement helpers acquire without the `connection()` wrapper: a generator-based
context manager per statement is measurable on the `remember` path."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg


class Database:
    def __init__(self, pool: asyncpg.Pool[Any], acquire_timeout: float) -> None:
        self.pool = pool
        self.acquire_timeout = acquire_timeout

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection[Any]]:
        async with self.pool.acquire(timeout=self.acquire_timeout) as conn:
            yield conn

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection[Any]]:
        async with self.connection() as conn, conn.transaction():
            yield conn

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        async with self.pool.acquire(timeout=self.acquire_timeout) as conn:
            return await conn.fetch(query, *args)

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        async with self.pool.acquire(timeout=self.acquire_timeout) as conn:
            return await conn.fetchrow(query, *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        async with self.pool.acquire(timeout=self.acquire_timeout) as conn:
            return await conn.fetchval(query, *args)

    async def execute(self, query: str, *args: Any) -> str:
        async with self.pool.acquire(timeout=self.acquire_timeout) as conn:
            return await conn.execute(query, *args)
