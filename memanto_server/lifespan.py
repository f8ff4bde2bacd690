"""Backends: the Postgres pool and the Redis client, opened, checked and closed.

Neither backend has to be up for the app to start: the pool connects lazily and
Redis connects on first use, so a request during an outage gets a 503 and the
app recovers by itself when the backend returns.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import msgspec
from litestar import Litestar

from memanto_server.embeddings.base import Embedder
from memanto_server.embeddings.factory import open_embedder
from memanto_server.embeddings.service import check_model
from memanto_server.errors import OUTAGE_ERRORS
from memanto_server.lib.redis_client import RedisClient, open_redis
from memanto_server.services import build_services
from memanto_server.settings import Settings

logger = logging.getLogger("memanto.lifespan")


async def _init_connection(conn: asyncpg.Connection[Any]) -> None:
    await conn.set_type_codec(
        "jsonb",
        schema="pg_catalog",
        encoder=lambda value: msgspec.json.encode(value).decode(),
        decoder=msgspec.json.decode,
    )


async def _keep_session(conn: asyncpg.Connection[Any]) -> None:
    """Release without asyncpg's default reset (UNLISTEN, RESET ALL, …): the app keeps no
    session state on pooled connections, so the reset was a second round trip per request.
    asyncpg still rolls back a transaction left open."""


def redis_from(settings: Settings, url: str | None = None) -> RedisClient:
    """A Redis client with the settings' timeouts, for `url` (default: `MEMANTO_REDIS_URL`)."""
    return open_redis(
        url or settings.redis_url, timeout=settings.redis_timeout, max_connections=settings.redis_max_connections
    )


async def open_pool(settings: Settings) -> asyncpg.Pool[Any]:
    pool = asyncpg.create_pool(
        settings.database_url,
        reset=_keep_session,
        min_size=0,
        max_size=settings.db_pool_max,
        timeout=settings.db_connect_timeout,
        command_timeout=settings.db_statement_timeout + 1,
        max_inactive_connection_lifetime=300,
        init=_init_connection,
        server_settings={
            "application_name": "memanto-server",
            "statement_timeout": str(int(settings.db_statement_timeout * 1000)),
            "idle_in_transaction_session_timeout": "30000",
            # Plans fitted to each call's filters (most are optional), not one generic plan.
            "plan_cache_mode": "force_custom_plan",
            # Fuzzy recall: how alike a misspelled word must be (pg_trgm's `<%`).
            "pg_trgm.word_similarity_threshold": "0.3",
            # Recall by meaning: a filtered vector-index scan goes on past other agents' memories
            # until it has enough of this agent's (pgvector >= 0.8; embeddings/repository.py NEAREST).
            "hnsw.iterative_scan": "relaxed_order",
            # Candidates kept while walking the graph: more than pgvector's 40 finds the true nearest
            # more often (top-10 recall 0.93 against 0.82 on clustered vectors) for about a fifth more
            # index time at 1M memories (bench/README.md, "Recall by meaning"; docs/benchmarks.md).
            "hnsw.ef_search": "100",
        },
    )
    await pool  # min_size=0: no connection is made yet
    return pool


async def warm_pool(pool: asyncpg.Pool[Any], settings: Settings) -> None:
    """Open `db_pool_min` connections now if Postgres answers; later if not."""
    try:
        conns = [await pool.acquire(timeout=settings.db_connect_timeout) for _ in range(settings.db_pool_min)]
        for conn in conns:
            await pool.release(conn)
    except OUTAGE_ERRORS as exc:
        logger.warning("Postgres is not reachable at start-up (%s); will retry on demand", type(exc).__name__)


async def check_embedding_model(pool: asyncpg.Pool[Any], embedder: Embedder | None, settings: Settings) -> None:
    """Refuse to start (ModelRefused) with an embedder whose model is not the database's; when
    Postgres is down, start anyway: the worker stores nothing and KNN finds nothing for a wrong model."""
    if embedder is None:
        return
    try:
        async with pool.acquire(timeout=settings.db_connect_timeout) as conn:
            await check_model(conn, embedder)
    except OUTAGE_ERRORS as exc:
        logger.warning("the embedding model was not checked at start-up (%s)", type(exc).__name__)
    except asyncpg.UndefinedTableError:
        logger.warning("the embedding model was not checked at start-up: the database is not migrated")


@asynccontextmanager
async def backends(app: Litestar) -> AsyncIterator[None]:
    """Put the pool, the Redis client (one server or a cluster) and the services on `app.state`; close in order."""
    settings: Settings = app.state.settings
    embedder = await open_embedder(settings)
    pool = await open_pool(settings)
    redis = redis_from(settings)
    services = build_services(settings, pool, redis, embedder)
    app.state.pool = pool
    app.state.redis = redis
    app.state.services = services
    await warm_pool(pool, settings)
    try:
        await check_embedding_model(pool, embedder, settings)
    except BaseException:
        await services.stop()
        await pool.close()
        await redis.aclose()
        raise
    await services.start()
    # Everything made so far lives as long as the process: keep it out of the collector's
    # sight, so that collections triggered by requests scan only what requests made
    # (fewer and shorter pauses, which shows in the tail latency under load).
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        # Every step is bounded: a stuck backend must not keep the process from exiting.
        await services.stop()
        await services.sessions.close()
        try:
            await asyncio.wait_for(redis.aclose(), timeout=5)
        except TimeoutError:
            logger.warning("the Redis client did not close within 5 s")
        try:
            await asyncio.wait_for(pool.close(), timeout=10)
        except TimeoutError:
            pool.terminate()
