"""A thin face on the asyncpg pool: every call waits at most `acquire_timeout` for a
connection, never forever, and a connection that broke is dropped, never pooled again.

- No connection to be had (Postgres refuses, is unreachable, or every pooled connection is
  busy for `acquire_timeout`): `DatabaseUnavailable`, answered as 503.
- A connection that breaks under a statement (Postgres shut down or restarted, the network
  cut, asyncpg's protocol left in a state it cannot leave, as after a fast shutdown whose
  goodbye arrived between two statements): it is terminated, so the pool opens a fresh one
  for the next caller, and the error is raised as `DatabaseUnavailable` (503) unless
  asyncpg already said it as a connection error.

The one-statement helpers acquire without the `connection()` wrapper: a generator-based
context manager per statement is measurable on the `remember` path."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg


class DatabaseUnavailable(Exception):
    """Postgres could not be reached, or the connection broke: an outage (503), not a bug."""


# Errors of the connection rather than of the statement: the connection is not reused.
_BROKEN = (
    asyncpg.InternalClientError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.OperatorInterventionError,  # admin or crash shutdown (57P01, 57P02)
    OSError,
)


def _closed(conn: Any) -> bool:
    """Whether a pooled connection is gone: closed, or already taken back by the pool (asyncpg
    detaches a connection it saw close, and its proxy then refuses every call)."""
    try:
        return bool(conn.is_closed())
    except asyncpg.InterfaceError:
        return True


def _unavailable(exc: BaseException, conn: Any) -> BaseException | None:
    """The error to raise instead of `exc`, if it is an outage; terminates a broken `conn`."""
    if isinstance(exc, asyncpg.QueryCanceledError):  # statement_timeout: the connection is fine
        return None
    if isinstance(exc, TimeoutError):  # waiting for a connection, or for a statement's answer
        return DatabaseUnavailable(f"no answer from Postgres in time ({type(exc).__name__})")
    if not isinstance(exc, _BROKEN):
        return None
    gone = conn is None or _closed(conn)
    if isinstance(exc, asyncpg.InterfaceError) and not gone:
        return None  # asyncpg refusing a misuse on a healthy connection: a bug, not an outage
    if not gone:
        conn.terminate()
    if isinstance(exc, asyncpg.PostgresError):
        return None  # already says what it is (a connection error or a shutdown)
    return DatabaseUnavailable(f"the Postgres connection failed ({type(exc).__name__}: {exc})")


class Database:
    def __init__(self, pool: asyncpg.Pool[Any], acquire_timeout: float) -> None:
        self.pool = pool
        self.acquire_timeout = acquire_timeout

    async def _acquire(self) -> Any:
        """A pooled connection (asyncpg's proxy of one)."""
        try:
            return await self.pool.acquire(timeout=self.acquire_timeout)
        except (
            TimeoutError,
            OSError,
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            asyncpg.InternalClientError,
        ) as exc:
            raise (_unavailable(exc, None) or exc) from exc

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection[Any]]:
        conn = await self._acquire()
        try:
            yield conn
        except BaseException as exc:
            if (instead := _unavailable(exc, conn)) is not None:
                raise instead from exc
            raise
        finally:
            await self.pool.release(conn)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection[Any]]:
        async with self.connection() as conn, conn.transaction():
            yield conn

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        return await self._statement("fetch", query, args)  # type: ignore[no-any-return]

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        return await self._statement("fetchrow", query, args)  # type: ignore[no-any-return]

    async def fetchval(self, query: str, *args: Any) -> Any:
        return await self._statement("fetchval", query, args)

    async def execute(self, query: str, *args: Any) -> str:
        return await self._statement("execute", query, args)  # type: ignore[no-any-return]

    async def _statement(self, method: str, query: str, args: tuple[Any, ...]) -> Any:
        conn = await self._acquire()
        try:
            return await getattr(conn, method)(query, *args)
        except BaseException as exc:
            if (instead := _unavailable(exc, conn)) is not None:
                raise instead from exc
            raise
        finally:
            await self.pool.release(conn)
