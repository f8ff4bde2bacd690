"""The embedding worker: embeds memories stored without an embedding, in batches.

Any number of workers (one in each app process by default, or `memanto-server worker`
processes) share the queue: a batch is claimed with FOR UPDATE SKIP LOCKED and held until
its embeddings are stored, in one transaction, so each memory is embedded by one worker,
once (again only if its text changes, or if the transaction is lost before its commit).

The worker wakes when memories are committed (LISTEN on the channel that migration 0006's
trigger notifies), and also looks every `poll_seconds`, in case a notification was missed
while it reconnected. It runs on the event loop but embeds in the embedder's own thread (or
a remote endpoint), one batch at a time, yielding between batches: a large backlog costs the
process at most the embedder's threads, and requests keep being served meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any
from uuid import UUID

import asyncpg

from memanto_server.embeddings import repository
from memanto_server.embeddings.base import Embedder, EmbedderError, EmbedderUnavailable, memory_text
from memanto_server.errors import OUTAGE_ERRORS
from memanto_server.lib.background import BackgroundLoop
from memanto_server.ops.metrics import (
    EMBEDDING_BACKLOG,
    EMBEDDING_BATCH_DURATION,
    EMBEDDING_ERRORS,
    EMBEDDINGS_STORED,
)

logger = logging.getLogger("memanto.embeddings")

CHANNEL = "memanto_embeddings"
RECONNECT_DELAY = 1.0
MAX_SKIPPED = 10_000


class ModelChanged(Exception):
    """The recorded model is no longer this worker's (a `reembed` began): its embeddings would be wrong."""


class EmbeddingWorker:
    def __init__(
        self,
        database_url: str,
        embedder: Embedder,
        *,
        batch_size: int = 32,
        max_chars: int = 4000,
        poll_seconds: float = 5.0,
        connect_timeout: float = 5.0,
        statement_timeout: float = 30.0,
    ) -> None:
        self._url = database_url
        self._embedder = embedder
        self._batch_size = batch_size
        self._max_chars = max_chars
        self._poll_seconds = poll_seconds
        self._connect_timeout = connect_timeout
        self._statement_timeout = statement_timeout
        self._wake = asyncio.Event()
        self._loop = BackgroundLoop("embedding-worker", self._run)
        # Memories whose text the embedder refused (not retried by this process again).
        self._skipped: set[UUID] = set()
        self.stopped_reason: str | None = None

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    async def connect(self) -> asyncpg.Connection[Any]:
        # A batch is held while it is embedded: a remote endpoint's timeouts and retries bound that.
        held_ms = int(self._statement_timeout * 1000) * 4
        return await asyncpg.connect(
            self._url,
            timeout=self._connect_timeout,
            server_settings={
                "application_name": "memanto-embedding-worker",
                "statement_timeout": str(int(self._statement_timeout * 1000)),
                "idle_in_transaction_session_timeout": str(held_ms),
            },
        )

    async def embed_batch(self, conn: asyncpg.Connection[Any]) -> int:
        """Claim, embed and store one batch; how many memories it held (0: nothing to do)."""
        started = time.perf_counter()
        async with conn.transaction():
            pending = await repository.claim(conn, self._batch_size, skip=list(self._skipped))
            if not pending:
                return 0
            texts = [memory_text(p.title, p.content, self._max_chars) for p in pending]
            try:
                vectors = await self._embedder.embed_documents(texts)
            except EmbedderUnavailable:
                raise
            except EmbedderError as exc:
                return await self._embed_one_by_one(conn, pending, texts, exc)
            stored = await repository.store(
                conn,
                [p.memory_id for p in pending],
                vectors,
                model_id=self._embedder.model_id,
                dimension=self._embedder.dimension,
            )
            if stored == 0:
                raise ModelChanged(self._embedder.model_id)
        EMBEDDINGS_STORED.inc(stored)
        EMBEDDING_BATCH_DURATION.observe(time.perf_counter() - started)
        return len(pending)

    async def _embed_one_by_one(
        self, conn: asyncpg.Connection[Any], pending: list[repository.Pending], texts: list[str], error: Exception
    ) -> int:
        """A batch the embedder refused: each memory alone, so one bad text stops only itself."""
        EMBEDDING_ERRORS.labels("failed").inc()
        logger.warning("the embedder refused a batch (%s); embedding its memories one by one", error)
        for item, text in zip(pending, texts, strict=True):
            try:
                vector = await self._embedder.embed_documents([text])
            except EmbedderUnavailable:
                raise
            except EmbedderError as exc:
                logger.error("memory %s cannot be embedded, skipped until restart: %s", item.memory_id, exc)
                if len(self._skipped) < MAX_SKIPPED:
                    self._skipped.add(item.memory_id)
                continue
            await repository.store(
                conn, [item.memory_id], vector, model_id=self._embedder.model_id, dimension=self._embedder.dimension
            )
            EMBEDDINGS_STORED.inc()
        return len(pending)

    async def drain(
        self, conn: asyncpg.Connection[Any], on_batch: Callable[[int], None] | None = None, *, wait: float = 0.5
    ) -> int:
        """Embed until no memory is left without an embedding (some may be held by other
        workers for a moment: then wait for them); how many this call embedded."""
        done = 0
        while True:
            count = await self.embed_batch(conn)
            done += count
            if on_batch is not None and count:
                on_batch(count)
            if count:
                await asyncio.sleep(0)
                continue
            if await repository.backlog(conn, up_to=len(self._skipped) + 1) <= len(self._skipped):
                return done
            await asyncio.sleep(wait)

    def _notified(self, *_: object) -> None:
        self._wake.set()

    async def _run(self, loop: BackgroundLoop) -> None:
        while loop.running:
            conn: asyncpg.Connection[Any] | None = None
            try:
                conn = await self.connect()
                await conn.add_listener(CHANNEL, self._notified)
                await self._serve(loop, conn)
            except ModelChanged:
                self.stopped_reason = "the recorded embedding model changed (memanto-server reembed)"
                logger.error("embedding worker stops: %s; restart with the new embedder settings", self.stopped_reason)
                return
            except EmbedderUnavailable as exc:
                EMBEDDING_ERRORS.labels("unavailable").inc()
                logger.warning("embedding worker: %s; trying again shortly", exc)
            except OUTAGE_ERRORS as exc:
                logger.warning("embedding worker: Postgres unavailable (%s); reconnecting", type(exc).__name__)
            except asyncpg.PostgresError as exc:  # e.g. a database not migrated yet
                logger.error("embedding worker: %s: %s; trying again shortly", type(exc).__name__, exc)
            finally:
                if conn is not None:
                    await _close(conn)
            if loop.running:
                await asyncio.sleep(RECONNECT_DELAY)

    async def _serve(self, loop: BackgroundLoop, conn: asyncpg.Connection[Any]) -> None:
        while loop.running:
            # Cleared before looking, so a notification that comes while we look is not lost.
            self._wake.clear()
            if await self.embed_batch(conn):
                await asyncio.sleep(0)  # let requests in between batches
                continue
            EMBEDDING_BACKLOG.set(await repository.backlog(conn, up_to=len(self._skipped) + 1))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_seconds)


async def _close(conn: asyncpg.Connection[Any]) -> None:
    try:
        await asyncio.wait_for(conn.close(), 2)
    except (TimeoutError, *OUTAGE_ERRORS):
        conn.terminate()


class BacklogMonitor:
    """Refreshes the backlog metric every `interval` seconds from the app's pool (whether or
    not this process runs a worker), counting up to a bound so a huge backlog stays cheap."""

    def __init__(self, embeddings: repository.EmbeddingRepository, interval: float) -> None:
        self._embeddings = embeddings
        self._interval = interval
        self._loop = BackgroundLoop("embedding-backlog", self._run)
        self.last: int | None = None

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    async def refresh(self) -> int:
        self.last = await self._embeddings.backlog()
        EMBEDDING_BACKLOG.set(self.last)
        return self.last

    async def _run(self, loop: BackgroundLoop) -> None:
        while loop.running:
            try:
                await self.refresh()
            except (*OUTAGE_ERRORS, asyncpg.PostgresError) as exc:
                logger.debug("backlog not refreshed: %s", type(exc).__name__)
            await asyncio.sleep(self._interval)
